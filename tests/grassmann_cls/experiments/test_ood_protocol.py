"""The OOD protocol of a checkpoint, its report, the ``ood`` / ``ood-study`` commands and long-tail wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from grassmann_cls.errors import DataError
from grassmann_cls.experiments.ood import expand_names, ood_checkpoint, ood_sets
from grassmann_cls.experiments.ood_study import study_settings
from grassmann_cls.experiments.ood_study_report import aggregate_long_tail, aggregate_open_set
from grassmann_cls.ood import OOD_SCORES
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import prepare
from grassmann_cls.training.train import train
from tests.cli_helpers import run, snapshot

TINY = {"dataset": "digits", "epochs": 1, "width": 16, "progress": False}
SUBSPACE_SCORES = {"max_projection", "subspace_residual"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny digits runs: GCR and softmax on classes 0-4, GCR on all classes."""
    root = tmp_path_factory.mktemp("ood")
    specs = {
        "gcr": {"classes": (0, 1, 2, 3, 4), "subspace_dim": 2},
        "softmax": {"classes": (0, 1, 2, 3, 4), "head": "softmax"},
        "all": {"subspace_dim": 2},
    }
    for name, spec in specs.items():
        train(TrainConfig(**TINY, **spec, output=str(root / name)))
    return {name: root / name for name in specs}


def test_noise_expands_and_duplicates_drop():
    assert expand_names("heldout, noise,heldout") == ["heldout", "gaussian_noise", "uniform_noise"]
    with pytest.raises(DataError):
        expand_names(" , ")


def test_gcr_run_gets_every_score_against_every_set(runs):
    result = ood_checkpoint(runs["gcr"], "heldout,noise")
    summary = result.summary
    assert set(summary["metrics"]) == set(OOD_SCORES.names()) and summary["skipped"] == {}
    assert set(summary["ood_sets"]) == {"heldout", "gaussian_noise", "uniform_noise"}
    held_out = prepare("digits").test.tensors[1] >= 5
    assert summary["ood_sets"]["heldout"] == int(held_out.sum())
    for per_set in summary["metrics"].values():
        for metrics in per_set.values():
            assert set(metrics) == {"auroc", "aupr_in", "aupr_out", "fpr95"}
            assert 0.0 <= metrics["auroc"] <= 1.0
    assert 0.0 <= summary["id_top1"] <= 100.0 and summary["num_id"] == len(prepare("digits", classes=range(5)).test)


def test_scores_that_do_not_apply_are_skipped_with_their_reason(runs):
    summary = ood_checkpoint(runs["softmax"] / "checkpoint.pt", "heldout").summary
    assert set(summary["skipped"]) == SUBSPACE_SCORES
    assert all("GrassmannHead" in reason for reason in summary["skipped"].values())
    assert set(summary["metrics"]) == set(OOD_SCORES.names()) - SUBSPACE_SCORES


def test_noise_sets_are_seeded_with_the_training_statistics():
    splits = prepare("digits", classes=range(5))
    config = TrainConfig(**TINY, classes=(0, 1, 2, 3, 4)).to_dict()
    first = ood_sets("noise", config, splits, splits.image_shape, seed=1)
    again = ood_sets("noise", config, splits, splits.image_shape, seed=1)
    for name in ("gaussian_noise", "uniform_noise"):
        x = first[name].tensors[0]
        assert torch.equal(x, again[name].tensors[0]) and x.shape[1:] == splits.image_shape
        assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1.0) < 0.1
    uniform = first["uniform_noise"].tensors[0]
    assert float(uniform.abs().max()) <= np.sqrt(3.0) * float(splits.train.tensors[0].std()) + 0.2


def test_heldout_is_refused_for_a_model_of_all_classes(runs):
    with pytest.raises(DataError, match="--classes"):
        ood_checkpoint(runs["all"], "heldout")


def test_ood_command_writes_report_metrics_and_plots(runs, tmp_path, capsys):
    code, out, err = run(["ood", runs["gcr"], "--ood-data", "heldout,noise", "-o", tmp_path / "report"], capsys)
    assert code == 0, err
    folder = tmp_path / "report"
    report = (folder / "report.md").read_text()
    assert "max_projection" in report and "top-1" in report and "FPR95" in report
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["metrics"]) == set(OOD_SCORES.names())
    assert (folder / "hist_max_projection.png").is_file() and (folder / "roc_heldout.png").is_file()
    assert "AUROC" in out


BAD_INPUT = [
    ["ood", "MISSING", "--ood-data", "heldout", "-o", "OUT"],
    ["ood", "GCR", "--ood-data", "no_such_set", "-o", "OUT"],
    ["ood", "ALL", "--ood-data", "heldout", "-o", "OUT"],
    ["ood", "GCR", "--ood-data", "heldout", "-o", "REPORT"],
    ["ood", "GCR", "-o", "OUT"],
    ["ood-study", "--seeds", "x", "-o", "OUT"],
    ["ood-study", "--epochs", "0", "-o", "OUT"],
    ["train", "--dataset", "digits", "--imbalance-ratio", "0.5", "-o", "OUT"],
    ["train", "--dataset", "digits", "--imbalance-ratio", "many", "-o", "OUT"],
]


@pytest.mark.parametrize("argv", BAD_INPUT, ids=lambda a: "-".join(a)[:40])
def test_bad_input_gives_one_stderr_line_exit_2_and_overwrites_nothing(argv, runs, tmp_path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("an earlier report")
    names = {
        "MISSING": tmp_path / "missing",
        "GCR": runs["gcr"],
        "ALL": runs["all"],
        "OUT": tmp_path / "out",
        "REPORT": report,
    }
    before = {name: snapshot(runs[name]) for name in runs} | {"report": snapshot(report)}
    code, out, err = run([names.get(a, a) for a in argv], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "error:" in err
    assert {name: snapshot(runs[name]) for name in runs} | {"report": snapshot(report)} == before
    assert not (tmp_path / "out").exists()


def test_train_imbalance_ratio_reaches_metrics_json(tmp_path, capsys):
    code, out, err = run(
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--width",
            "16",
            "--subspace-dim",
            "2",
            "--imbalance-ratio",
            "100",
            "--no-progress",
            "-o",
            tmp_path / "lt",
        ],
        capsys,
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "lt" / "metrics.json").read_text())
    assert metrics["config"]["imbalance_ratio"] == 100.0
    counts = metrics["data"]["train_counts"]
    assert counts[0] == max(counts) and counts[-1] == counts[0] // 100
    assert {"test_many_top1", "test_medium_top1", "test_few_top1"} <= set(metrics["final"])
    assert "few-shot" in out


def test_study_cells_cover_both_parts_and_validate():
    settings = study_settings(output="unused", seeds=(0, 1, 2))
    cells = settings.cells()
    assert len([c for c in cells if c[0] == "open"]) == 6 * 3
    assert len([c for c in cells if c[0] == "lt"]) == 2 * 2 * 3
    assert all(settings.config(c).imbalance_ratio == c[3] for c in cells)


def test_study_tables_average_over_seeds():
    metrics = {"msp": {"heldout": {"auroc": 0.5, "fpr95": 0.9}}}
    runs = [{"part": "open", "head": "softmax", "k": 0, "id_top1": 90.0 + s, "metrics": metrics} for s in range(3)]
    runs[0]["metrics"] = {"msp": {"heldout": {"auroc": 0.8, "fpr95": 0.6}}}
    row = aggregate_open_set(runs)[0]
    assert row["heldout_auroc"] == pytest.approx(60.0) and row["id_top1"] == pytest.approx(91.0)
    assert row["heldout_auroc_std"] == pytest.approx(np.std([80, 50, 50], ddof=1))
    tail = [
        {
            "part": "lt",
            "head": "gcr",
            "k": 8,
            "ratio": 10.0,
            "train_counts": [2, 1],
            "top1": t,
            "many_top1": t,
            "medium_top1": None,
            "few_top1": None,
        }
        for t in (70.0, 80.0)
    ]
    (row,) = aggregate_long_tail(tail)
    assert row["top1"] == 75.0 and row["medium_top1"] is None and row["model"] == "GCR k=8"
