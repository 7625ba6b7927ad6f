"""Checkpoints of earlier versions hold settings their run never read: loading resets them, users are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from grassmann_cls.cli import main
from grassmann_cls.errors import ConfigError
from grassmann_cls.training.checkpoint import load_checkpoint, save_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.runs import analyze, evaluate

TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--train-size",
    "200",
    "--epochs",
    "1",
    "--width",
    "16",
    "--head",
    "softmax",
    "--seed",
    "4",
    "--no-progress",
]
OLD_SETTINGS = {"subspace_dim": 4, "retraction": "cholesky_qr", "bases_lr_factor": 10.0}
"""What earlier versions stored for softmax runs (the demo passed subspace_dim; cholesky_qr is a retired name)."""


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def old_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved-config") / "softmax-run"
    assert main([*TRAIN, "--output", str(folder)]) == 0
    path = folder / "checkpoint.pt"
    payload = load_checkpoint(path)
    payload["config"] |= OLD_SETTINGS
    save_checkpoint(path, payload)
    return path


def test_a_saved_softmax_config_with_gcr_settings_loads_with_them_reset():
    saved = TrainConfig(dataset="digits", head="softmax").to_dict() | OLD_SETTINGS
    config = TrainConfig.from_saved(saved)
    defaults = TrainConfig()
    assert config.head == "softmax"
    assert (config.subspace_dim, config.retraction, config.bases_lr_factor) == (
        defaults.subspace_dim,
        "qr",
        defaults.bases_lr_factor,
    )
    with pytest.raises(ConfigError, match="subspace_dim=4"):
        TrainConfig.from_dict(saved)


def test_settings_given_explicitly_are_refused_even_at_their_defaults():
    TrainConfig.from_dict({"dataset": "digits", "head": "softmax", "subspace_dim": 8})  # the default: not read, not set
    with pytest.raises(ConfigError, match="subspace_dim=8 would be ignored"):
        TrainConfig.from_dict({"dataset": "digits", "head": "softmax", "subspace_dim": 8}, given=["subspace_dim"])


def test_a_saved_gcr_config_keeps_its_settings_and_renames_retired_ones():
    saved = TrainConfig(dataset="digits", subspace_dim=5).to_dict() | {"retraction": "cholesky_qr"}
    assert TrainConfig.from_saved(saved) == TrainConfig(dataset="digits", subspace_dim=5)


def test_a_saved_config_with_an_unknown_key_is_still_refused():
    with pytest.raises(ConfigError, match="unknown configuration keys"):
        TrainConfig.from_saved({"dataset": "digits", "subspace_dims": 3})


def test_an_old_softmax_checkpoint_evaluates_and_analyzes(old_checkpoint):
    result = evaluate(old_checkpoint)
    assert result["num_samples"] > 0 and 0 <= result["top1"] <= 100
    assert "variability" in analyze(old_checkpoint)


def test_an_old_softmax_checkpoint_resumes(old_checkpoint, tmp_path, capsys):
    folder = Path(shutil.copytree(old_checkpoint.parent, tmp_path / "softmax-run"))
    code, err = run(["train", "--resume", folder, "--epochs", "2", "--no-progress"], capsys)
    assert code == 0 and err == "", err
    metrics = json.loads((folder / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]


@pytest.mark.parametrize("value", ["8", "4"])  # the default and the old checkpoint's value
@pytest.mark.parametrize("resume", [False, True])
def test_a_user_giving_subspace_dim_to_a_softmax_run_is_refused_by_name(
    old_checkpoint, tmp_path, capsys, resume, value
):
    argv = (
        ["train", "--resume", old_checkpoint, "-o", tmp_path, "--epochs", "2", "--head", "softmax"]
        if resume
        else [*TRAIN, "--output", tmp_path / "new"]
    )
    code, err = run([*argv, "--subspace-dim", value], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"subspace_dim={value} would be ignored" in lines[0], err
