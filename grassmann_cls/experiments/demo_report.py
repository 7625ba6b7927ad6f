"""The demo's report: a table in the layout of the paper's Table 3, a reading of it, plots."""

from __future__ import annotations

import dataclasses
import datetime
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grassmann_cls.training.checkpoint import atomic_write, write_json
from grassmann_cls.training.data import DataSplits

__all__ = ["aggregate", "table_markdown", "reading", "write_report", "plot_metrics", "plot_principal_angles"]

METRICS = ("top1", "top5", "variability", "r2", "transfer")
_HEADERS = ("Head", "Top-1 (%)", "Top-5 (%)", "Variability (deg)", "R^2", "Transfer (%)")
_LABELS = {"softmax": "Softmax", "cosine": "Cosine softmax"}
# Paper, Table 3 (ImageNet-1K, ResNet50-D; transfer: average of 6 sets, linear SVM).
PAPER_TABLE = (
    ("Softmax", 78.04, 60.12, 0.495, 77.98),
    ("Cosine softmax", 78.30, 56.87, 0.528, 73.72),
    ("GCR k=1", 78.42, 56.50, 0.534, 73.64),
    ("GCR k=4", 78.68, 61.48, 0.459, 76.21),
    ("GCR k=8", 79.26, 63.49, 0.430, 77.64),
    ("GCR k=16", 79.21, 65.79, 0.395, 78.95),
    ("GCR k=32", 78.63, 67.74, 0.365, 79.70),
)


def _label(head: str, k: int) -> str:
    return _LABELS.get(head, f"GCR k={k}")


def aggregate(runs: list[dict]) -> list[dict[str, Any]]:
    """One row per head (in order of first appearance): mean and std over seeds of every metric.

    The std is the sample standard deviation (0 for one seed).
    """
    groups: dict[tuple[str, int], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["head"], run["k"]), []).append(run)
    rows = []
    for (head, k), members in groups.items():
        row: dict[str, Any] = {"head": head, "k": k, "label": _label(head, k), "seeds": len(members)}
        for metric in METRICS:
            values = np.array([m[metric] for m in members], dtype=np.float64)
            row[metric] = float(values.mean())
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def table_markdown(rows: list[dict]) -> str:
    """The table: top-1 and top-5 as mean +- std, the analysis columns as means."""
    lines = ["| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
    for r in rows:
        spread = [_mean_std(r, metric) for metric in ("top1", "top5", "transfer")]
        cells = [r["label"], spread[0], spread[1], f"{r['variability']:.2f}", f"{r['r2']:.3f}", spread[2]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_std(row: dict, metric: str) -> str:
    """``"mean ± std"`` of ``metric``, with ``n/a`` for the std of one seed (it measures nothing)."""
    std = f"{row[f'{metric}_std']:.2f}" if row["seeds"] > 1 else "n/a"
    return f"{row[metric]:.2f} ± {std}"


def _paper_markdown() -> str:
    lines = ["| Head | Top-1 (%) | Variability (deg) | R^2 | Transfer (%) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {a:.2f} | {v:.2f} | {r:.3f} | {t:.2f} |" for name, a, v, r, t in PAPER_TABLE]
    return "\n".join(lines)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(y) == 0:
        return 0.0
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _trend(gcr: list[dict], metric: str, expected: int, unit: str, digits: int) -> str:
    """``"rises clearly with k (...)"``: direction and strength by Spearman's rho, compared with the paper."""
    ks = np.array([r["k"] for r in gcr], dtype=float)
    values = np.array([r[metric] for r in gcr])
    rho = _spearman(ks, values)
    paper = "rises" if expected > 0 else "falls"
    if abs(rho) < 0.4:
        shape, verdict = "shows no clear trend with k", f"the paper's trend (it {paper}) is not reproduced"
    else:
        strength = "clearly " if abs(rho) >= 0.8 else "weakly "
        shape = strength + ("rises" if rho > 0 else "falls") + " with k"
        verdict = "as in the paper" if np.sign(rho) == expected else f"unlike the paper (it {paper})"
    span = ", ".join(f"{v:.{digits}f}" for v in values)
    ks_text = ", ".join(str(int(k)) for k in ks)
    return f"{shape} ({span}{unit} for k = {ks_text}; Spearman rho = {rho:+.2f}): {verdict}"


def reading(rows: list[dict]) -> list[str]:
    """Plain sentences comparing the measured table with the paper's qualitative claims."""
    gcr = [r for r in rows if r["head"] == "gcr"]
    vector = {r["head"]: r for r in rows if r["head"] != "gcr"}
    lines = []
    if "softmax" in vector and gcr:
        soft, best = vector["softmax"], max(gcr, key=lambda r: r["top1"])
        gap = best["top1"] - soft["top1"]
        noise = float(np.hypot(best["top1_std"], soft["top1_std"]))
        beats = [f"k={r['k']}" for r in gcr if r["top1"] > soft["top1"]]
        verdict = f"GCR beats softmax for {', '.join(beats)}" if beats else "GCR does not beat softmax for any k"
        if min(best["seeds"], soft["seeds"]) > 1:
            spread = f"{'larger' if gap > noise else 'not larger'} than the seed spread ({noise:.2f})"
        else:
            spread = "with one seed the seed spread is n/a"
        lines.append(
            f"Accuracy: {verdict}. The best GCR ({best['label']}, {best['top1']:.2f} %) is {gap:+.2f} points "
            f"from softmax ({soft['top1']:.2f} %), {spread}."
        )
    if len(gcr) > 1:
        lines.append("Intra-class variability " + _trend(gcr, "variability", +1, " deg", 1) + ".")
        lines.append("Class separation R^2 " + _trend(gcr, "r2", -1, "", 3) + ".")
        lines.append("Linear transfer accuracy " + _trend(gcr, "transfer", +1, " %", 2) + ".")
    if "softmax" in vector and gcr:
        soft = vector["softmax"]
        better = [r["label"] for r in gcr if r["transfer"] > soft["transfer"]]
        lines.append(
            f"Transfer against softmax ({soft['transfer']:.2f} %): "
            + (f"higher for {', '.join(better)}." if better else "no GCR head transfers better.")
        )
    return lines


def _save_figure(fig, path: Path) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def plot_metrics(rows: list[dict], folder: Path) -> list[str]:
    """One PNG per metric against k (GCR with error bars, vector heads as bands) and a 2 x 2 summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("top1", "top-1 accuracy (%)", "accuracy.png"),
        ("variability", "intra-class variability (deg)", "variability.png"),
        ("r2", "class separation R^2", "r2.png"),
        ("transfer", "transfer accuracy (%)", "transfer.png"),
    )
    summary, axes = plt.subplots(2, 2, figsize=(10, 7))
    files = []
    for (metric, title, name), ax in zip(panels, axes.flat):
        single, own = plt.subplots(figsize=(5, 3.5))
        for target in (own, ax):
            _panel(target, rows, metric, title)
        _save_figure(single, folder / name)
        plt.close(single)
        files.append(name)
    summary.tight_layout()
    _save_figure(summary, folder / "summary.png")
    plt.close(summary)
    return [*files, "summary.png"]


def _panel(ax, rows: list[dict], metric: str, title: str) -> None:
    gcr = [r for r in rows if r["head"] == "gcr"]
    ks = [r["k"] for r in gcr]
    ax.errorbar(
        ks, [r[metric] for r in gcr], yerr=[r[f"{metric}_std"] for r in gcr], marker="o", capsize=3, label="GCR"
    )
    vector = [r for r in rows if r["head"] != "gcr"]
    for r, style, color in zip(vector, ("--", ":", "-."), ("tab:orange", "tab:green", "tab:red")):
        ax.axhline(r[metric], linestyle=style, color=color, label=r["label"])
        ax.axhspan(r[metric] - r[f"{metric}_std"], r[metric] + r[f"{metric}_std"], color=color, alpha=0.12)
    if ks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("subspace dimension k")
    ax.set_title(title)
    ax.legend(fontsize="small")


def plot_principal_angles(runs: list[dict], folder: Path, title: str | None = None) -> str:
    """Histogram of the principal angles between class subspaces, one outline per k (first seed).

    ``runs`` are dicts with ``head, k, seed`` and ``principal_angles`` (degrees).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for run in runs:
        if run["head"] != "gcr" or run["k"] in seen:
            continue
        seen.add(run["k"])
        ax.hist(
            run["principal_angles"],
            bins=np.linspace(0, 90, 46).tolist(),
            histtype="step",
            density=True,
            linewidth=1.5,
            label=f"k={run['k']}",
        )
    ax.set_xlabel("principal angle between two class subspaces (deg)")
    ax.set_ylabel("density")
    ax.set_title(title or f"all class pairs, seed {runs[0]['seed']}")
    ax.legend(fontsize="small")
    _save_figure(fig, folder / "principal_angles.png")
    plt.close(fig)
    return "principal_angles.png"


def _describe(settings, main: DataSplits, target: DataSplits, runs: list[dict], seconds: float, jobs: int) -> str:
    cpu = sum(r.get("cpu_seconds", 0.0) for r in runs)
    gcr = settings.config("gcr", 1, 0)
    fallback = (
        ""
        if settings.dataset == "fashion_mnist"
        else (
            " Fashion-MNIST was not found, so the demo used scikit-learn's digits (classes 0-4), "
            "transferring to digits 5-9; `make data` installs Fashion-MNIST where it can."
        )
    )
    return (
        f"Main data: **{main.name}** ({len(main.train)} train / {len(main.test)} test images of "
        f"{'x'.join(map(str, main.image_shape))}, {main.num_classes} classes).{fallback} "
        f"Model: MLP (2 x {settings.width}, BatchNorm, ReLU) trained from scratch, SGD lr {settings.lr:g} momentum "
        f"{gcr.momentum:g} weight decay {gcr.weight_decay:g}, cosine schedule with {settings.warmup_epochs:g} "
        f"warm-up epoch(s), {settings.epochs} epochs, batch {settings.batch_size}; seeds "
        f"{', '.join(map(str, settings.seeds))}. GCR: scale {gcr.scale:g}, bases stepped by Riemannian SGD "
        f"(retraction {gcr.retraction}, {gcr.grassmann_momentum} momentum). Variability and R^2: penultimate "
        f"features of the test split. Transfer: {settings.probe} probe on standardised frozen features of "
        f"**{target.name}** ({len(target.train)} train / {len(target.test)} test). {len(runs)} runs took "
        f"{seconds:.0f} s wall-clock with {jobs} worker process(es) of one thread ({cpu:.0f} CPU-seconds)."
    )


def write_report(
    folder: Path, settings, main: DataSplits, target: DataSplits, runs: list[dict], *, seconds: float, jobs: int
) -> dict[str, Any]:
    """Write ``report.md``, ``metrics.json`` and the plots; print the table; return the metrics."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = aggregate(runs)
    files = [*plot_metrics(rows, folder), plot_principal_angles(runs, folder)]
    title = f"# GCR demo on {main.name}" + (" (quick)" if settings.quick else "")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n\n".join(
        [
            title,
            f"Measured {stamp} with torch {torch.__version__} on {platform.machine()} "
            f"({platform.python_implementation()} {platform.python_version()}).",
            _describe(settings, main, target, runs, seconds, jobs),
            "## Results (mean ± std over seeds)",
            table_markdown(rows),
            "## Reading",
            "\n".join(f"- {line}" for line in reading(rows)),
            "## Plots",
            "![metrics against k](summary.png)",
            "![principal angles](principal_angles.png)",
            "## The paper's Table 3, for comparison (ImageNet-1K, ResNet50-D, transfer: 6 sets, linear SVM)",
            _paper_markdown(),
        ]
    )
    with atomic_write(folder / "report.md") as f:
        f.write((text + "\n").encode())
    metrics = {
        "settings": dataclasses.asdict(settings),
        "data": {"main": main.name, "target": target.name},
        "table": rows,
        "runs": runs,
        "seconds": seconds,
        "jobs": jobs,
        "files": ["report.md", "metrics.json", *files],
    }
    write_json(folder / "metrics.json", metrics)
    print(title.lstrip("# "))
    print(table_markdown(rows))
    for line in reading(rows):
        print("- " + line)
    print(f"report: {folder / 'report.md'}")
    return metrics
