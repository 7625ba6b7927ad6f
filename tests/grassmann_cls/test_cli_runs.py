"""The command line on run folders: resume with the checkpoint's settings, run folders, one-line messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from grassmann_cls.cli import main
from grassmann_cls.experiments import demo_report
from grassmann_cls.training.checkpoint import load_checkpoint, save_checkpoint
from tests.cli_helpers import run, snapshot

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
    "--subspace-dim",
    "3",
    "--seed",
    "4",
    "--no-progress",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-runs") / "my-run"
    assert main([*TRAIN, "--output", str(folder)]) == 0
    return folder


@pytest.fixture
def copy(trained, tmp_path):
    return Path(shutil.copytree(trained, tmp_path / "my-run"))


def test_resume_needs_no_settings_and_extends_with_more_epochs(copy, capsys):
    code, out, err = run(["train", "--resume", copy, "--epochs", "2", "--no-progress"], capsys)
    assert code == 0 and err == "", err
    metrics = json.loads((copy / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["config"]["seed"] == 4 and metrics["config"]["subspace_dim"] == 3


@pytest.mark.parametrize(
    ("flag", "value", "name"),
    [
        ("--seed", "0", "seed"),
        ("--subspace-dim", "2", "subspace_dim"),
        ("--lr", "0.3", "lr"),
        ("--dataset", "fashion_mnist", "dataset"),
    ],
)
def test_resume_refuses_a_flag_that_changes_the_trained_part_by_name(copy, capsys, flag, value, name):
    before = snapshot(copy)
    code, _, err = run(["train", "--resume", copy / "checkpoint.pt", "-o", copy, "--epochs", "2", flag, value], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"with other settings: {name} " in lines[0]
    assert snapshot(copy) == before


@pytest.mark.filterwarnings("ignore:the probe data set")  # trained on every digit: transfer warns, rightly
@pytest.mark.parametrize("command", [["evaluate"], ["analyze"], ["transfer", "--target-classes", "5,6,7,8,9"]])
def test_checkpoint_commands_accept_a_run_folder(trained, capsys, command):
    code, out, _ = run([command[0], trained, *command[1:], "--json"], capsys)
    assert code == 0 and str(trained / "checkpoint.pt") in json.loads(out)["checkpoint"]


@pytest.mark.parametrize("command", [["evaluate"], ["analyze"], ["transfer"], ["train", "--resume"]])
def test_a_folder_without_checkpoint_is_one_line_naming_it(tmp_path, capsys, command):
    code, _, err = run([*command, tmp_path], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"run folder {tmp_path} holds no checkpoint.pt" in lines[0]


def test_a_pickled_model_is_refused_as_not_weights_only(tmp_path, capsys):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    code, _, err = run(["evaluate", tmp_path / "model.pt"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "pickled Python objects (torch.nn.modules.linear.Linear)" in lines[0]
    assert "corrupt" not in lines[0]


def test_a_truncated_file_is_still_called_corrupt(trained, tmp_path, capsys):
    (tmp_path / "cut.pt").write_bytes((trained / "checkpoint.pt").read_bytes()[:500])
    code, _, err = run(["evaluate", tmp_path / "cut.pt"], capsys)
    assert code == 2 and "truncated or corrupt" in err


def test_analyze_plot_title_names_the_run(trained, tmp_path, capsys, monkeypatch):
    titles = []
    monkeypatch.setattr(demo_report, "plot_principal_angles", lambda runs, folder, title=None: titles.append(title))
    code, _, _ = run(["analyze", trained / "checkpoint.pt", "--output", tmp_path / "an"], capsys)
    assert code == 0 and titles == ["all class pairs of my-run"]


def command_line(*argv) -> subprocess.CompletedProcess:
    """The real command in its own process, where warnings reach stderr as a user sees them."""
    return subprocess.run([sys.executable, "-m", "grassmann_cls", *map(str, argv)], capture_output=True, text=True)


def test_transfer_onto_the_training_data_warns_in_one_line(trained):
    with pytest.warns(UserWarning, match="holds the data the model was trained on"):
        assert main(["transfer", str(trained), "--target", "digits", "--target-classes", "0,1,2"]) == 0
    done = command_line("transfer", trained, "--target", "digits", "--target-classes", "0,1,2")
    code, err = done.returncode, done.stderr
    assert code == 0 and err.count("\n") == 1
    assert all(line.startswith("grassmann-cls: warning: ") for line in err.strip().splitlines())
    assert "the probe data set digits[0,1,2] holds the data the model was trained on" in err


def test_transfer_onto_other_classes_does_not_warn(tmp_path, capsys):
    folder = tmp_path / "half"
    assert main([*TRAIN, "--classes", "0,1,2,3,4", "--output", str(folder)]) == 0
    capsys.readouterr()
    code, _, err = run(["transfer", folder, "--target", "digits", "--target-classes", "5,6,7,8,9"], capsys)
    assert code == 0 and err == ""


def test_reproject_warning_is_one_line_without_source(copy):
    payload = load_checkpoint(copy)
    payload["model"]["fc.bases"][..., 0] *= 1.5
    save_checkpoint(copy / "checkpoint.pt", payload)
    done = command_line("evaluate", copy, "--reproject")
    code, lines = done.returncode, done.stderr.strip().splitlines()
    assert code == 0 and len(lines) == 1 and lines[0].startswith("grassmann-cls: warning: ")
    assert "fc.bases was not on its manifold" in lines[0]


def test_train_with_landing_bases_runs_end_to_end(tmp_path, capsys):
    code, out, err = run([*TRAIN, "--bases-optimizer", "landing", "--output", tmp_path / "landing"], capsys)
    assert code == 0 and err == "", err
    metrics = json.loads((tmp_path / "landing" / "metrics.json").read_text())
    assert metrics["config"]["bases_optimizer"] == "landing" and "test top-1" in out


def test_train_refuses_a_retraction_for_landing_bases_in_one_line(capsys):
    code, _, err = run([*TRAIN, "--bases-optimizer", "landing", "--retraction", "polar"], capsys)
    assert code == 2 and "retraction='polar' would be ignored: bases_optimizer='landing'" in err
    assert len(err.strip().splitlines()) == 1


def test_train_takes_the_reference_reorth_options(tmp_path, capsys):
    argv = [*TRAIN, "--recipe", "paper", "--reorth-qr", "unsigned", "--reorth-count-from", "0", "-o", tmp_path / "ref"]
    code, _, err = run(argv, capsys)
    assert code == 0 and err == "", err
    config = json.loads((tmp_path / "ref" / "metrics.json").read_text())["config"]
    assert (config["reorth_qr"], config["reorth_count_from"]) == ("unsigned", 0)
