"""The demo and its report on digits."""

from __future__ import annotations

import json

import pytest

from grassmann_cls.errors import GrassmannError
from grassmann_cls.experiments.demo import demo, demo_settings
from grassmann_cls.experiments.demo_report import aggregate, reading, table_markdown
from grassmann_cls.training.data import builtin


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return folder, demo(folder, quick=True, dataset="digits", jobs=1, progress=False)


def test_quick_demo_writes_report_metrics_and_plots(quick_demo):
    folder, metrics = quick_demo
    for name in metrics["files"]:
        assert (folder / name).stat().st_size > 0
    for name in ("summary.png", "accuracy.png", "variability.png", "r2.png", "transfer.png", "principal_angles.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((folder / "metrics.json").read_text())["table"] == metrics["table"]


def test_quick_demo_table_has_the_paper_layout(quick_demo):
    folder, metrics = quick_demo
    labels = [row["label"] for row in metrics["table"]]
    assert labels == ["Softmax", "Cosine softmax", "GCR k=1", "GCR k=2", "GCR k=4", "GCR k=8", "GCR k=16"]
    report = (folder / "report.md").read_text()
    assert "| Head | Top-1 (%) | Top-5 (%) | Variability (deg) | R^2 | Transfer (%) |" in report
    assert "## Reading" in report and "digits[5,6,7,8,9]" in report
    assert all(row["seeds"] == 2 for row in metrics["table"])


def test_quick_demo_runs_measure_everything(quick_demo):
    _, metrics = quick_demo
    run = next(r for r in metrics["runs"] if r["head"] == "gcr" and r["k"] == 4)
    assert 0 < run["variability"] < 90 and run["r2"] <= 1 and run["transfer"] > 50
    assert len(run["principal_angles"]) == 10 * 4 and all(0 <= a <= 90 for a in run["principal_angles"])
    assert metrics["runs"][0]["principal_angles"] == []


@pytest.mark.slow
def test_worker_processes_give_the_same_numbers_as_in_process(tmp_path):
    options = {
        "quick": True,
        "dataset": "digits",
        "seeds": (0,),
        "subspace_dims": (2,),
        "heads": ("softmax",),
        "epochs": 1,
        "progress": False,
    }
    single = demo(tmp_path / "one", jobs=1, **options)
    pooled = demo(tmp_path / "two", jobs=2, **options)
    assert [r["top1"] for r in single["runs"]] == [r["top1"] for r in pooled["runs"]]
    assert [r["transfer"] for r in single["runs"]] == pytest.approx([r["transfer"] for r in pooled["runs"]])


def test_auto_uses_digits_without_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv(builtin.ENV_VAR, raising=False)
    settings = demo_settings(quick=True)
    assert settings.dataset == "digits" and settings.classes == (0, 1, 2, 3, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset": "cifar10"}, "fashion_mnist or digits"),
        ({"learning_rate": 1}, "unknown demo settings"),
        ({"seeds": ()}, "at least one seed"),
        ({"probe": "forest"}, "logistic"),
        ({"epochs": 0}, "epochs"),
    ],
    ids=["dataset", "key", "seeds", "probe", "epochs"],
)
def test_bad_demo_settings_raise(kwargs, match):
    with pytest.raises(GrassmannError, match=match):
        demo_settings(**{"dataset": "digits", **kwargs})


def synthetic_runs(values: dict[int, tuple[float, float, float, float]]) -> list[dict]:
    """Two seeds per head; ``values[k] = (top1, variability, r2, transfer)``, k = 0 is softmax."""
    runs = []
    for k, (top1, variability, r2, transfer) in values.items():
        for seed, shift in ((0, -0.1), (1, 0.1)):
            runs.append(
                {
                    "head": "softmax" if k == 0 else "gcr",
                    "k": k,
                    "seed": seed,
                    "top1": top1 + shift,
                    "top5": 99.0,
                    "variability": variability,
                    "r2": r2,
                    "transfer": transfer,
                }
            )
    return runs


def test_reading_confirms_the_paper_when_the_numbers_do():
    rows = aggregate(
        synthetic_runs({0: (90, 50, 0.5, 80), 1: (89, 45, 0.6, 75), 4: (91, 55, 0.45, 81), 16: (90.5, 60, 0.4, 83)})
    )
    lines = reading(rows)
    assert lines[0].startswith("Accuracy: GCR beats softmax for k=4, k=16.")
    assert "clearly rises with k" in lines[1] and lines[1].endswith("as in the paper.")
    assert "clearly falls with k" in lines[2] and lines[2].endswith("as in the paper.")
    assert "as in the paper" in lines[3]
    assert rows[0]["top1"] == pytest.approx(90) and rows[0]["top1_std"] == pytest.approx(0.1414, abs=1e-3)


def test_reading_says_so_when_gcr_does_not_win():
    rows = aggregate(
        synthetic_runs({0: (95, 50, 0.5, 80), 1: (90, 60, 0.4, 85), 2: (89, 50, 0.5, 80), 8: (88, 40, 0.6, 70)})
    )
    lines = reading(rows)
    assert "does not beat softmax for any k" in lines[0]
    assert "unlike the paper (it rises)" in lines[1] and "unlike the paper (it falls)" in lines[2]
    assert "no GCR head transfers better" not in lines[4]


def test_table_shows_mean_and_std():
    table = table_markdown(aggregate(synthetic_runs({0: (90, 50, 0.5, 80)})))
    assert "| Softmax | 90.00 ± 0.14 | 99.00 ± 0.00 | 50.00 | 0.500 | 80.00 ± 0.00 |" in table
