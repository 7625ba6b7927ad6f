"""Tables and plots of :func:`~grassmann_cls.experiments.ood_study.ood_study`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from grassmann_cls.training.checkpoint import atomic_write, write_json

__all__ = [
    "run_label",
    "aggregate_open_set",
    "aggregate_long_tail",
    "open_set_markdown",
    "long_tail_markdown",
    "write_study_report",
]

# The OOD set columns of the open-set table; the two noise sets are reported apart.
_SETS = ("heldout", "digits", "gaussian_noise", "uniform_noise")


def run_label(head: str, k: int) -> str:
    """``Softmax``, ``Cosine`` or ``GCR k=K``."""
    return {"softmax": "Softmax", "cosine": "Cosine"}.get(head, f"GCR k={k}")


def aggregate_open_set(runs: list[dict]) -> list[dict]:
    """Mean and std over seeds of AUROC and FPR95 (percent), per model, score and OOD set."""
    groups: dict[tuple, list[dict]] = {}
    for run in (r for r in runs if r["part"] == "open"):
        groups.setdefault((run["head"], run["k"]), []).append(run)
    rows = []
    for (head, k), members in groups.items():
        for score in members[0]["metrics"]:
            row = {
                "model": run_label(head, k),
                "head": head,
                "k": k,
                "score": score,
                "seeds": len(members),
                "id_top1": float(np.mean([m["id_top1"] for m in members])),
            }
            for ood in members[0]["metrics"][score]:
                for metric in ("auroc", "fpr95"):
                    values = 100 * np.array([m["metrics"][score][ood][metric] for m in members])
                    row[f"{ood}_{metric}"] = float(values.mean())
                    row[f"{ood}_{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append(row)
    return rows


def aggregate_long_tail(runs: list[dict]) -> list[dict]:
    """Mean and std over seeds of top-1 and the shot-group accuracies, per ratio and model."""
    groups: dict[tuple, list[dict]] = {}
    for run in (r for r in runs if r["part"] == "lt"):
        groups.setdefault((run["ratio"], run["head"], run["k"]), []).append(run)
    rows = []
    for (ratio, head, k), members in groups.items():
        row = {
            "ratio": ratio,
            "model": run_label(head, k),
            "head": head,
            "k": k,
            "seeds": len(members),
            "train_counts": members[0]["train_counts"],
        }
        for key in ("top1", "many_top1", "medium_top1", "few_top1"):
            values = np.array([m[key] for m in members if m[key] is not None], dtype=np.float64)
            row[key] = float(values.mean()) if len(values) else None
            row[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _cell(row: dict, key: str, digits: int = 1) -> str:
    value = row.get(key)
    return "-" if value is None else f"{value:.{digits}f} ± {row.get(f'{key}_std', 0.0):.{digits}f}"


def open_set_markdown(rows: list[dict], sets=_SETS) -> str:
    """One row per model and score: AUROC / FPR95 (percent, mean ± std) per OOD set."""
    header = "| Model | Score | " + " | ".join(f"{s} AUROC | {s} FPR95" for s in sets) + " |"
    lines = [header, "|---|---|" + "---:|---:|" * len(sets)]
    for row in rows:
        cells = [f"{_cell(row, f'{s}_auroc')} | {_cell(row, f'{s}_fpr95')}" for s in sets]
        lines.append(f"| {row['model']} | {row['score']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_markdown(rows: list[dict]) -> str:
    """In-distribution top-1 of each open-set model (mean over seeds)."""
    seen, lines = set(), ["| Model | ID top-1 (%) | seeds |", "|---|---:|---:|"]
    for row in rows:
        if row["model"] not in seen:
            seen.add(row["model"])
            lines.append(f"| {row['model']} | {row['id_top1']:.2f} | {row['seeds']} |")
    return "\n".join(lines)


def long_tail_markdown(rows: list[dict]) -> str:
    """One row per ratio and model: top-1 and shot-group top-1 (percent, mean ± std)."""
    lines = [
        "| R | Model | Top-1 | Many-shot | Medium-shot | Few-shot | training counts |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cells = " | ".join(_cell(row, key, 2) for key in ("top1", "many_top1", "medium_top1", "few_top1"))
        lines.append(f"| {row['ratio']:g} | {row['model']} | {cells} | {','.join(map(str, row['train_counts']))} |")
    return "\n".join(lines)


def plot_open_set(rows: list[dict], folder: Path) -> str:
    """Bar chart: AUROC of every model and score on the held-out classes and on digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel per OOD set, stacked, and one legend under both: legible at page width (~7 in).
    fig, axes = plt.subplots(2, 1, figsize=(7, 7.5), sharex=True)
    scores = list(dict.fromkeys(r["score"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / len(scores)
    for ax, ood in zip(axes, ("heldout", "digits")):
        for i, score in enumerate(scores):
            found = {r["model"]: r for r in rows if r["score"] == score}
            x = [j + i * width for j, m in enumerate(models) if m in found]
            y = [found[m][f"{ood}_auroc"] for m in models if m in found]
            err = [found[m][f"{ood}_auroc_std"] for m in models if m in found]
            ax.bar(x, y, width, yerr=err, label=score, capsize=1.5, color=f"C{i}")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models, fontsize=9)
        low = min(r[f"{ood}_auroc"] for r in rows)
        ax.set(ylim=(max(0.0, low - 5), 100), ylabel="AUROC (%)", title=f"in-distribution vs {ood}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(folder / "open_set_auroc.png", dpi=150)
    plt.close(fig)
    return "open_set_auroc.png"


def plot_long_tail(rows: list[dict], folder: Path) -> str:
    """Grouped bars: top-1 per shot group, softmax against GCR, per ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = list(dict.fromkeys(r["ratio"] for r in rows))
    fig, axes = plt.subplots(1, len(ratios), figsize=(5 * len(ratios), 3.8), squeeze=False)
    keys = ("top1", "many_top1", "medium_top1", "few_top1")
    for ax, ratio in zip(axes[0], ratios):
        members = [r for r in rows if r["ratio"] == ratio]
        width = 0.8 / len(members)
        for i, row in enumerate(members):
            y = [row[k] if row[k] is not None else np.nan for k in keys]
            ax.bar(
                np.arange(len(keys)) + i * width,
                y,
                width,
                yerr=[row[f"{k}_std"] for k in keys],
                label=row["model"],
                capsize=2,
            )
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, ["all", "many", "medium", "few"])
        ax.set(ylabel="test top-1 (%)", title=f"long tail, R = {ratio:g}", ylim=(0, 100))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "long_tail.png", dpi=110)
    plt.close(fig)
    return "long_tail.png"


def write_study_report(folder: str | Path, payload: dict[str, Any]) -> dict[str, Any]:
    """Write ``report.md``, ``study.json`` (with the aggregated tables) and the plots; returns the payload."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    open_rows, tail_rows = aggregate_open_set(payload["runs"]), aggregate_long_tail(payload["runs"])
    files = []
    if open_rows:
        files.append(plot_open_set(open_rows, folder))
    if tail_rows:
        files.append(plot_long_tail(tail_rows, folder))
    payload = {**payload, "open_set": open_rows, "long_tail": tail_rows, "files": files}
    write_json(folder / "study.json", payload)
    settings = payload["settings"]
    text = [
        "# OOD and long-tail study",
        "",
        f"Seeds {list(settings['seeds'])}, {settings['epochs']} epochs, MLP width {settings['width']}; "
        f"{payload['seconds']:.0f} s. Mean ± sample std over seeds, percent.",
        "",
        "## Open set: in-distribution accuracy",
        "",
        accuracy_markdown(open_rows),
        "",
        "## Open set: AUROC and FPR95",
        "",
        open_set_markdown(open_rows),
        "",
        "## Long tail",
        "",
        long_tail_markdown(tail_rows),
        "",
        "Plots: " + ", ".join(f"[{name}]({name})" for name in files),
        "",
    ]
    with atomic_write(folder / "report.md") as handle:
        handle.write("\n".join(text).encode())
    return payload
