"""The ``grassmann-cls`` command line: every command on digits, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from grassmann_cls import cli
from grassmann_cls.cli import build_parser, main
from grassmann_cls.training.models import HEADS
from tests.cli_helpers import run, snapshot

TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--train-size",
    "300",
    "--epochs",
    "2",
    "--width",
    "32",
    "--subspace-dim",
    "3",
    "--no-progress",
]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli") / "run"
    assert main([*TRAIN, "--output", str(folder)]) == 0
    return folder


def test_train_writes_checkpoint_and_reports_each_epoch(tmp_path, capsys):
    vector_head = [a for a in TRAIN if a not in ("--subspace-dim", "3")] + ["--head", "softmax"]
    code, out, err = run([*vector_head, "--output", tmp_path / "run"], capsys)
    assert code == 0 and err == ""
    assert out.count("epoch ") == 2 and "test top-1" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["head"] == "softmax" and len(metrics["history"]) == 2


def test_train_recipe_paper_sets_the_papers_optimizer_and_refuses_a_conflict(tmp_path, capsys):
    code, _, err = run([*TRAIN, "--recipe", "paper", "--epochs", "1", "--output", tmp_path / "run"], capsys)
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]
    assert code == 0 and (config["retraction"], config["grassmann_momentum"], config["reorth_every"]) == (
        "exp",
        "paper",
        5,
    )
    code, _, err = run([*TRAIN, "--recipe", "paper", "--retraction", "qr", "--output", tmp_path / "other"], capsys)
    assert code == 2 and "conflicts with retraction='qr'" in err and "Traceback" not in err


def test_train_options_reach_the_config(tmp_path, capsys):
    code, _, err = run(
        [*TRAIN, "--grassmann-momentum", "paper", "--reorth-every", "3", "--output", tmp_path / "run"], capsys
    )
    assert code == 0 and err == ""
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]
    assert config["reorth_every"] == 3 and config["grassmann_momentum"] == "paper"


def test_evaluate_prints_accuracy_and_json(run_folder, capsys):
    code, out, _ = run(["evaluate", run_folder / "checkpoint.pt", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["num_samples"] == 450 and result["epoch"] == 2
    assert 0 <= result["top1"] <= result["top5"] <= 100
    code, out, _ = run(["evaluate", run_folder / "checkpoint.pt"], capsys)
    assert code == 0 and out.startswith("top-1 ") and "top-5 " in out


def test_analyze_writes_json_and_histogram(run_folder, tmp_path, capsys):
    code, out, _ = run(["analyze", run_folder / "checkpoint.pt", "--output", tmp_path / "an"], capsys)
    assert code == 0 and "variability" in out and "R^2" in out
    saved = json.loads((tmp_path / "an" / "analysis.json").read_text())
    assert saved["subspace_dim"] == 3
    assert (tmp_path / "an" / "principal_angles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_transfer_probes_another_data_set(run_folder, capsys):
    code, out, _ = run(
        [
            "transfer",
            run_folder / "checkpoint.pt",
            "--target",
            "digits",
            "--target-classes",
            "5,6,7,8,9",
            "--probe",
            "svm",
            "--json",
        ],
        capsys,
    )
    result = json.loads(out)
    assert code == 0 and result["probe"] == "svm" and result["num_test"] == 224


def test_demo_quick_writes_the_report(tmp_path, capsys):
    argv = [
        "demo",
        "--quick",
        "--dataset",
        "digits",
        "--seeds",
        "0",
        "--subspace-dims",
        "1,4",
        "--epochs",
        "2",
        "--jobs",
        "1",
        "--no-progress",
        "--output",
        tmp_path / "demo",
    ]
    code, out, _ = run(argv, capsys)
    assert code == 0 and "| GCR k=4 |" in out
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"report.md", "metrics.json", "summary.png", "principal_angles.png"} <= names


def test_head_choices_come_from_the_registry():
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    head = next(a for a in train_parser._actions if a.dest == "head")
    assert tuple(head.choices) == HEADS.names()


BAD_INPUT = [
    ["train", "--head", "arcface"],
    ["train", "--dataset", "digits", "--subspace-dim", "999", "--width", "16", "--epochs", "1"],
    ["train", "--dataset", "digits", "--lr", "-1"],
    ["train", "--dataset", "digits", "--epochs", "two"],
    ["train", "--dataset", "digits", "--classes", "0,x"],
    ["train", "--dataset", "/no/such/data.npz"],
    ["train", "--dataset", "digits", "--backbone", "torchvision:resnet18", "--epochs", "1"],
    ["train", "--dataset", "digits", "--reorth-every", "-1"],
    ["evaluate", "MISSING"],
    ["evaluate", "CORRUPT"],
    ["analyze", "CORRUPT"],
    ["transfer", "MISSING"],
    ["transfer", "CHECKPOINT", "--probe", "forest"],
    ["transfer", "CHECKPOINT", "--target", "digits", "--target-classes", "3"],
    ["demo", "--dataset", "cifar"],
    ["demo", "--dataset", "digits", "--jobs", "0"],
    ["demo", "--dataset", "digits", "--subspace-dims", "0"],
]


@pytest.mark.parametrize("argv", BAD_INPUT, ids=lambda a: "-".join(a)[:40])
def test_bad_input_gives_one_stderr_line_exit_2_and_overwrites_nothing(argv, run_folder, tmp_path, capsys):
    if argv == BAD_INPUT[6] and __import__("importlib").util.find_spec("torchvision"):
        pytest.skip("torchvision is installed")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run_folder / "checkpoint.pt").read_bytes()[:500])
    names = {"MISSING": tmp_path / "missing.pt", "CORRUPT": corrupt, "CHECKPOINT": run_folder / "checkpoint.pt"}
    argv = [str(names.get(a, a)) for a in argv]
    if argv[0] in ("train", "demo"):
        argv += ["--output", str(run_folder)]
    before = snapshot(run_folder)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "error:" in err
    assert snapshot(run_folder) == before


def test_internal_bugs_keep_their_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "_evaluate", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["evaluate", "x.pt"])


def test_python_dash_m_runs_the_command_line(run_folder):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ok = subprocess.run(
        [sys.executable, "-m", "grassmann_cls", "evaluate", str(run_folder / "checkpoint.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("top-1")
    bad = subprocess.run(
        [sys.executable, "-m", "grassmann_cls", "evaluate", str(run_folder / "nothing.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
