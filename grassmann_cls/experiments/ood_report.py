"""The report of :func:`~grassmann_cls.experiments.ood.ood_checkpoint`: tables, ``metrics.json`` and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from grassmann_cls.errors import ConfigError
from grassmann_cls.experiments.ood import OODEvaluation
from grassmann_cls.training.checkpoint import atomic_write, write_json

__all__ = ["REPORT_FILES", "check_report_folder", "metrics_table", "write_ood_report", "plot_histograms", "plot_roc"]

REPORT_FILES = ("report.md", "metrics.json")


def check_report_folder(folder: str | Path, overwrite: bool = False) -> Path:
    """``folder`` if a report may be written there (without writing anything).

    Raises
    ------
    ConfigError
        If ``folder`` is a file, or already holds a report and ``overwrite`` is false.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {folder} exists and is not a folder; choose another -o")
    held = [name for name in REPORT_FILES if (folder / name).exists()]
    if held and not overwrite:
        raise ConfigError(f"{folder} already holds an OOD report ({', '.join(held)}); pass --overwrite or another -o")
    return folder


def metrics_table(summary: dict) -> str:
    """Markdown: one row per score, AUROC and FPR95 (percent) per OOD set."""
    sets = list(summary["ood_sets"])
    header = "| Score | " + " | ".join(f"{s} AUROC | {s} FPR95" for s in sets) + " |"
    rule = "|---|" + "---:|---:|" * len(sets)
    rows = [header, rule]
    for score, per_set in summary["metrics"].items():
        cells = [f"{100 * per_set[s]['auroc']:.2f} | {100 * per_set[s]['fpr95']:.2f}" for s in sets]
        rows.append(f"| {score} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histograms(values: dict[str, dict[str, np.ndarray]], folder: Path) -> list[str]:
    """One PNG per score: histograms of the in-distribution and every OOD set's scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for score, groups in values.items():
        fig, ax = plt.subplots(figsize=(6, 3.6))
        everything = np.concatenate(list(groups.values()))
        low, high = np.quantile(everything, [0.001, 0.999])
        bins = np.linspace(low, high, 60).tolist() if high > low else 30
        for label, scores in groups.items():
            ax.hist(
                scores,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.5,
                label="in-distribution" if label == "id" else label,
            )
        ax.set(xlabel=f"{score} (higher: more in-distribution)", ylabel="density", title=score)
        ax.legend(fontsize=8)
        name = f"hist_{score}.png"
        _save(fig, folder / name)
        names.append(name)
    return names


def plot_roc(values: dict[str, dict[str, np.ndarray]], folder: Path) -> list[str]:
    """One PNG per OOD set: the ROC curve of every score (in-distribution positive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    sets = [s for s in next(iter(values.values())) if s != "id"] if values else []
    names = []
    for ood in sets:
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        for score, groups in values.items():
            truth = np.r_[np.ones(len(groups["id"])), np.zeros(len(groups[ood]))]
            fpr, tpr, _ = roc_curve(truth, np.r_[groups["id"], groups[ood]])
            ax.plot(fpr, tpr, label=score, linewidth=1.2)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set(
            xlabel="false-positive rate (OOD accepted)",
            ylabel="true-positive rate (ID accepted)",
            title=f"ROC: in-distribution vs {ood}",
        )
        ax.legend(fontsize=7)
        name = f"roc_{ood}.png"
        _save(fig, folder / name)
        names.append(name)
    return names


def write_ood_report(folder: str | Path, result: OODEvaluation, *, overwrite: bool = False) -> dict:
    """Write ``report.md``, ``metrics.json`` and the plots of ``result`` to ``folder``.

    Parameters
    ----------
    folder : path-like
        Created if missing; refused when it already holds a report, unless ``overwrite``.
    result : OODEvaluation
        From :func:`~grassmann_cls.experiments.ood.ood_checkpoint`.
    overwrite : bool
        Replace a report already there.

    Returns
    -------
    dict
        What ``metrics.json`` holds (the summary and the written ``files``).
    """
    folder = check_report_folder(folder, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    summary = result.summary
    files = plot_histograms(result.values, folder) + plot_roc(result.values, folder)
    payload = {**summary, "files": ["report.md", "metrics.json", *files]}
    write_json(folder / "metrics.json", payload)
    skipped = [f"- `{name}`: {reason}" for name, reason in summary["skipped"].items()] or ["- none"]
    lines = [
        f"# OOD detection: {summary.get('checkpoint', 'model')}",
        "",
        f"In-distribution: {summary.get('dataset', '')} test split, {summary['num_id']} images, "
        f"top-1 **{summary['id_top1']:.2f} %**; scores fitted on {summary['num_train']} training images.",
        "",
        "OOD sets: " + ", ".join(f"{name} ({count} images)" for name, count in summary["ood_sets"].items()) + ".",
        "",
        "AUROC (%, higher is better) and FPR95 (%, the false-positive rate on OOD data at 95 % true-positive "
        "rate on in-distribution data; lower is better):",
        "",
        metrics_table(summary),
        "",
        "Scores skipped (they do not apply to this head):",
        "",
        *skipped,
        "",
        "Plots: " + ", ".join(f"[{name}]({name})" for name in files),
        "",
    ]
    with atomic_write(folder / "report.md") as handle:
        handle.write("\n".join(lines).encode())
    return payload
