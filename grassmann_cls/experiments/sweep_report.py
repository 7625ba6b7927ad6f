r"""The report of a sweep: ``report.md``, ``results.csv``, ``sweep.json`` and plots.

================  =============================================================
file              content
================  =============================================================
``report.md``     settings, one table row per group of cells (mean ± std over
                  seeds), the measured orders of agreement, a mechanical
                  reading of the numbers, the plots
``results.csv``   one row per run
``sweep.json``    the plan, every run with its per-epoch history, the groups
                  and the orders
``accuracy.png``  final test top-1 per group: mean ± std and every seed
``curves.png``    test top-1 against epoch (mean over seeds), a panel per ``k``
``cost.png``      optimizer step time and orthonormality drift per group
``order.png``     error against the exponential map over the step size ``t``
================  =============================================================

The reading is mechanical on purpose: it compares each axis's spread with the
seed-to-seed noise and points out groups whose runs are bit-for-bit identical
(the same computation under two names), and leaves the interpretation to
people.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import os
import platform
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from grassmann_cls.experiments.diagnostics import STEPS, agreement_with_exp, agreement_with_parallel
from grassmann_cls.training.checkpoint import atomic_write, write_json
from grassmann_cls.training.data import DataSplits
from grassmann_cls.training.recipe import UNUSED_SETTINGS

__all__ = [
    "group_runs",
    "measure_orders",
    "order_text",
    "results_csv",
    "reading",
    "table_markdown",
    "plot_accuracy",
    "plot_curves",
    "plot_cost",
    "plot_orders",
    "write_report",
]

_CSV_COLUMNS = (
    "step_map",
    "n",
    "k",
    "epochs",
    "test_top1",
    "test_top5",
    "train_top1",
    "train_loss",
    "drift",
    "step_ms",
    "bases_step_ms",
    "step_ms_median",
    "bases_step_ms_median",
    "train_seconds",
    "order_bases",
    "order_subspaces",
    "transport_order",
)


def _varying(axes) -> list[str]:
    return [name for name, values in axes if name != "seed" and len(values) > 1]


def _label(cell: dict, names: list[str]) -> str:
    parts = [f"{n}={cell[n]:g}" if isinstance(cell[n], (int, float)) else str(cell[n]) for n in names]
    return " / ".join(parts) or "all cells"


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _mean_std(mean: float, std: float, seeds: int) -> str:
    """``"mean ± std"``, with ``n/a`` for the std of one seed (it measures nothing)."""
    return f"{mean:.2f} ± {std:.2f}" if seeds > 1 else f"{mean:.2f} ± n/a"


def _transport_of(config: dict) -> str | None:
    """The vector transport a run moves momentum with; ``None`` for paper momentum and bases optimizers without one."""
    unused = UNUSED_SETTINGS[config.get("bases_optimizer", "rsgd")]
    return None if config["grassmann_momentum"] == "paper" or "transport" in unused else config["transport"]


def group_runs(runs: list[dict], axes) -> list[dict[str, Any]]:
    """One row per combination of the non-seed axes, in grid order: means and stds over seeds.

    Parameters
    ----------
    runs : list of dict
        Cell records (see :func:`~grassmann_cls.experiments.sweep.run_cell`).
    axes : sequence of (str, tuple)
        The plan's axes.
    """
    names = [name for name, _ in axes if name != "seed"]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(run["cell"][n] for n in names), []).append(run)
    rows = []
    for key, members in groups.items():
        finals = [m["final"] for m in members]
        curves = np.array([[h["test_top1"] for h in m["history"]] for m in members])
        top1 = [f["test_top1"] for f in finals]
        config = members[0]["config"]
        rows.append(
            {
                **dict(zip(names, key)),
                "label": _label(dict(zip(names, key)), _varying(axes)),
                "seeds": len(members),
                "step_map": members[0]["step_map"],
                "n": members[0]["n"],
                "k": config["subspace_dim"],
                "transport": _transport_of(config),
                "top1": float(np.mean(top1)),
                "top1_std": _std(top1),
                "top1_runs": top1,
                "top5": float(np.mean([f["test_top5"] for f in finals])),
                "train_loss": float(np.mean([f["train_loss"] for f in finals])),
                "step_ms": float(np.mean([m["step_ms"] for m in members])),
                "bases_step_ms": float(np.mean([m["bases_step_ms"] for m in members])),
                "bases_step_ms_std": _std([m["bases_step_ms"] for m in members]),
                "drift": float(max(m["drift"] for m in members)),
                "train_seconds": float(np.mean([m["train_seconds"] for m in members])),
                "curve": curves.mean(axis=0).tolist(),
                "signature": [[f["test_top1"], f["train_loss"], f["test_loss"]] for f in finals],
            }
        )
    return rows


def measure_orders(rows: list[dict]) -> list[dict[str, Any]]:
    """Orders of agreement of every step map (with exp) and transport (with parallel) the rows use, per ``(n, k)``."""
    orders, seen = [], set()
    for row in rows:
        for kind, name in (("retraction", row["step_map"]), ("transport", row["transport"])):
            key = (kind, name, row["n"], row["k"])
            if name is None or key in seen:
                continue
            seen.add(key)
            measure = agreement_with_exp if kind == "retraction" else agreement_with_parallel
            measured = measure(name, row["n"], row["k"])
            orders.append({"kind": kind, "name": name, "n": row["n"], "k": row["k"], **measured})
    return orders


def order_text(slope: float | None) -> str:
    """``"exact"`` for ``None``, else the order ``slope - 1`` to one decimal."""
    return "exact" if slope is None else f"{slope - 1:.1f}"


def _orders_of(orders: list[dict], row: dict) -> dict[str, str]:
    out = {"order_bases": "", "order_subspaces": "", "transport_order": ""}
    for o in orders:
        if (o["n"], o["k"]) != (row["n"], row["k"]):
            continue
        if o["kind"] == "retraction" and o["name"] == row["step_map"]:
            out |= {"order_bases": order_text(o["bases_slope"]), "order_subspaces": order_text(o["subspace_slope"])}
        if o["kind"] == "transport" and o["name"] == row["transport"]:
            out["transport_order"] = order_text(o["slope"])
    return out


def results_csv(runs: list[dict], axes, orders: list[dict]) -> str:
    """The text of ``results.csv``: the axes, then the measurements, one row per run."""
    names = [name for name, _ in axes]
    out = io.StringIO()
    writer = csv.DictWriter(
        out, names + [c for c in _CSV_COLUMNS if c not in names], extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for run in runs:
        config = run["config"]
        transport = _transport_of(config)
        shape = {"step_map": run["step_map"], "n": run["n"], "k": config["subspace_dim"], "transport": transport}
        measured = {
            key: run[key]
            for key in ("drift", "step_ms", "bases_step_ms", "step_ms_median", "bases_step_ms_median", "train_seconds")
        }
        writer.writerow(
            {
                **run["final"],
                **shape,
                **_orders_of(orders, shape),
                **measured,
                "epochs": config["epochs"],
                **run["cell"],
            }
        )
    return out.getvalue()


def _noise(rows: list[dict]) -> float:
    """Pooled standard deviation over seeds of the final top-1 (0 with one seed)."""
    variances = [r["top1_std"] ** 2 for r in rows if r["seeds"] > 1]
    return math.sqrt(sum(variances) / len(variances)) if variances else 0.0


def _axis_line(rows: list[dict], name: str, values, noise: float, runs_total: int) -> str:
    values = [v for v in values if any(r[name] == v for r in rows)]  # a value whose every cell was left out has none
    means = {v: np.mean([r["top1"] for r in rows if r[name] == v]) for v in values}
    spread = max(means.values()) - min(means.values())
    text = f"**{name}**: " + ", ".join(f"{v} {m:.2f}" for v, m in means.items()) + " % (averaged over the "
    text += f"other axes and seeds); spread {spread:.2f} points"
    if noise == 0:
        return text + " (one seed: no noise estimate)."
    threshold = 2 * math.sqrt(2) * noise / math.sqrt(runs_total / len(values))
    verdict = "within" if spread <= threshold else "larger than"
    return text + f", {verdict} the seed noise (two standard errors of a difference: {threshold:.2f})."


def _identical_lines(rows: list[dict]) -> list[str]:
    sets: dict[str, list[dict]] = {}
    for row in rows:
        sets.setdefault(repr(row["signature"]), []).append(row)
    lines = []
    for members in (m for m in sets.values() if len(m) > 1):
        text = f"{', '.join(r['label'] for r in members)} gave bit-for-bit identical results: the same computation"
        lines.append(text + ".")
    return lines


def reading(rows: list[dict], axes) -> list[str]:
    """A mechanical reading of the groups: range, each axis against seed noise, identical groups, drift, cost."""
    noise, runs_total = _noise(rows), sum(r["seeds"] for r in rows)
    best, worst = max(rows, key=lambda r: r["top1"]), min(rows, key=lambda r: r["top1"])
    pooled = f"{noise:.2f} points" if any(r["seeds"] > 1 for r in rows) else "n/a (one seed per group)"
    lines = [
        f"Final test top-1 ranges from {worst['top1']:.2f} % ({worst['label']}) to {best['top1']:.2f} % "
        f"({best['label']}); the pooled standard deviation over seeds is {pooled}."
    ]
    lines += [
        _axis_line(rows, name, values, noise, runs_total)
        for name, values in axes
        if name != "seed" and len({r[name] for r in rows}) > 1
    ]
    lines += _identical_lines(rows)
    by_map: dict[str, float] = {}
    for r in rows:
        by_map[r["step_map"]] = max(by_map.get(r["step_map"], 0.0), r["drift"])
    lines.append(
        "Orthonormality drift max ||S^T S - I||_F after training, worst run per step map: "
        + ", ".join(f"{m} {d:.1e}" for m, d in by_map.items())
        + "."
    )
    fast, slow = min(rows, key=lambda r: r["bases_step_ms"]), max(rows, key=lambda r: r["bases_step_ms"])
    lines.append(
        f"Step of the bases alone: {fast['bases_step_ms']:.3f} ms ({fast['label']}) to "
        f"{slow['bases_step_ms']:.3f} ms ({slow['label']}); whole-model step "
        f"{min(r['step_ms'] for r in rows):.2f} to {max(r['step_ms'] for r in rows):.2f} ms."
    )
    return lines


# --- plots ------------------------------------------------------------------------------------
# The figures are drawn at the width they are shown at (7 inches, a page column), so that
# no font is scaled down below the size it is set at; legends sit below the panels.

_WIDTH = 7.0
_STYLES: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")  # line styles, typed for matplotlib


def _figure(height: float, panels: int = 1, columns: int | None = None):
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas

    columns = columns or panels
    fig = Figure(figsize=(_WIDTH, height), layout="constrained")
    rows = -(-panels // columns)
    return fig, [fig.add_subplot(rows, columns, i + 1) for i in range(panels)]


def _save(fig, path: Path) -> str:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=150)
    return path.name


def _legend_below(fig, handles: list, columns: int = 3) -> None:
    longest = max(len(h.get_label()) for h in handles)
    fit = int(_WIDTH * 72 // (6.2 * longest + 40))  # about 6.2 pt per character at 10 pt, 40 pt of line
    fig.legend(
        handles=handles, loc="outside lower center", ncols=max(1, min(columns, len(handles), fit)), frameon=False
    )


def plot_accuracy(rows: list[dict], folder: Path) -> str:
    """``accuracy.png``: final top-1 per group (rows of :func:`group_runs`); returns the file name."""
    fig, (ax,) = _figure(1.2 + 0.3 * len(rows))
    y = np.arange(len(rows))
    for i, r in enumerate(rows):
        ax.plot(r["top1_runs"], [i] * len(r["top1_runs"]), ".", color="0.6")
    ax.errorbar([r["top1"] for r in rows], y, xerr=[r["top1_std"] for r in rows], fmt="o", capsize=3)
    ax.set_yticks(y, [r["label"] for r in rows])
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_xlabel("final test top-1 (%): mean ± std over seeds; grey: each seed")
    return _save(fig, folder / "accuracy.png")


def _line_keys(axes) -> tuple[list[str], str | None]:
    """The axes that pick a line's colour, and the one that picks its dash (the second varying axis besides k)."""
    names = [name for name in _varying(axes) if name != "k"]
    dash = names[1] if len(names) > 1 else None
    return [name for name in names if name != dash], dash


def plot_curves(rows: list[dict], folder: Path, axes) -> str:
    """``curves.png``: test top-1 against epoch, mean over seeds, one panel per ``k``; returns the file name.

    A line's colour stands for its group's values of the varying axes but one, its dash for that one
    (for the default grid: colour the retraction, dash the momentum style); one legend below the panels.
    """
    from matplotlib.lines import Line2D

    colour_names, dash = _line_keys(axes)
    colours = list(dict.fromkeys(_label(r, colour_names) for r in rows))
    dashes = list(dict.fromkeys(r[dash] for r in rows)) if dash else [None]
    panels = _by_k(rows)
    fig, panel_axes = _figure(3.8, len(panels), min(len(panels), 2))
    for ax, (k, members) in zip(panel_axes, panels.items()):
        for r in members:
            colour = f"C{colours.index(_label(r, colour_names)) % 10}"
            style = _STYLES[dashes.index(r[dash]) % len(_STYLES)] if dash else "-"
            ax.plot(np.arange(1, len(r["curve"]) + 1), r["curve"], style, color=colour, linewidth=1.5)
        ax.set_title(f"k = {k}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    panel_axes[0].set_ylabel("test top-1 (%), mean over seeds")
    handles = [Line2D([], [], color=f"C{i % 10}", label=text) for i, text in enumerate(colours)]
    if dash:
        handles += [
            Line2D([], [], color="k", linestyle=_STYLES[i % len(_STYLES)], label=f"{dash} {value}")
            for i, value in enumerate(dashes)
        ]
    _legend_below(fig, handles, 4)
    return _save(fig, folder / "curves.png")


def _by_k(rows: list[dict]) -> dict[int, list[dict]]:
    panels: dict[int, list[dict]] = {}
    for r in rows:
        panels.setdefault(r["k"], []).append(r)
    return panels


def plot_cost(rows: list[dict], folder: Path) -> str:
    """``cost.png``: optimizer step time and orthonormality drift per group; returns the file name."""
    from matplotlib.ticker import NullFormatter

    fig, (time_ax, drift_ax) = _figure(1.6 + 0.3 * len(rows), 2)
    y = np.arange(len(rows))
    time_ax.barh(
        y,
        [r["bases_step_ms"] for r in rows],
        xerr=[r["bases_step_ms_std"] for r in rows],
        color="C0",
        label="bases alone",
    )
    time_ax.plot([r["step_ms"] for r in rows], y, "k|", markersize=12, label="whole model")
    time_ax.set_yticks(y, [r["label"] for r in rows])
    time_ax.set_xlabel("optimizer step (ms),\nfastest of 50")
    drifts = [max(r["drift"], 1e-18) for r in rows]
    drift_ax.plot(drifts, y, "o", color="C1")
    drift_ax.set_xscale("log")
    low = 10.0 ** math.floor(math.log10(min(drifts)))  # whole decades, at least two: labelled major ticks only
    drift_ax.set_xlim(low, max(10.0 ** math.ceil(math.log10(max(drifts))), 100 * low))
    drift_ax.xaxis.set_minor_formatter(NullFormatter())
    drift_ax.set_yticks(y, [])
    drift_ax.grid(True, axis="x", which="major", alpha=0.3)
    drift_ax.set_xlabel("drift after training,\n" r"$\max_c \|S_c^T S_c - I\|_F$")
    for ax in (time_ax, drift_ax):
        ax.invert_yaxis()
    _legend_below(fig, time_ax.get_legend_handles_labels()[0], 2)
    return _save(fig, folder / "cost.png")


def _transport_panel(ax, transports: list[dict], t: np.ndarray, first_colour: int) -> None:
    for i, o in enumerate(transports):
        ax.loglog(
            t,
            np.maximum(o["error"], 1e-17),
            "-o",
            color=f"C{(first_colour + i) % 10}",
            markersize=3,
            label=f"{o['name']}, k = {o['k']}",
        )
    ax.set_title("transport vs parallel transport", fontsize="medium")
    ax.set_xlabel("step size t")
    ax.legend(fontsize="small")


def plot_orders(orders: list[dict], folder: Path) -> str:
    """``order.png``: log-log error against exp (and parallel transport) over ``t``; returns the file name.

    One panel per ``k`` for the step maps (a colour per map, solid: bases as matrices, dashed: subspaces)
    and one for the transports; the orders themselves are in ``report.md``.
    """
    from matplotlib.lines import Line2D

    retractions = [o for o in orders if o["kind"] == "retraction"]
    transports = [o for o in orders if o["kind"] == "transport"]
    ks = sorted({o["k"] for o in retractions})
    drawn = list(dict.fromkeys(o["name"] for o in retractions if o["bases_slope"] is not None))
    exact = list(dict.fromkeys(o["name"] for o in retractions if o["bases_slope"] is None))
    panels = len(ks) + bool(transports)
    spare = panels % 2 == 1 and panels > 1  # an empty grid cell holds the legend
    fig, axes = _figure(3.0 * -(-panels // 2) + (0 if spare else 0.8), panels + spare, min(panels, 2))
    legend_ax = axes.pop() if spare else None
    t = np.asarray(STEPS)
    for ax, k in zip(axes, ks):
        for o in (o for o in retractions if o["k"] == k and o["bases_slope"] is not None):
            colour = f"C{drawn.index(o['name']) % 10}"
            ax.loglog(t, o["bases_error"], "-o", color=colour, markersize=3)
            ax.loglog(t, np.maximum(o["subspace_error"], 1e-17), "--", color=colour, linewidth=2, zorder=3)
        ax.set_title(f"step map vs exp on Gr({retractions[0]['n']}, {k})", fontsize="medium")
        ax.set_xlabel("step size t")
    if transports:
        _transport_panel(axes[-1], transports, t, len(drawn))
    for ax in axes[:: min(panels, 2)]:
        ax.set_ylabel("error")
    handles = [Line2D([], [], color=f"C{i % 10}", marker="o", markersize=3, label=name) for i, name in enumerate(drawn)]
    handles += [
        Line2D([], [], color="k", marker="o", markersize=3, label="bases (matrices)"),
        Line2D([], [], color="k", linestyle="--", label="subspaces"),
    ]
    if exact:
        handles.append(Line2D([], [], linestyle="none", label=f"exact, not drawn: {', '.join(exact)}"))
    if legend_ax is None:
        _legend_below(fig, handles, 4)
    else:
        legend_ax.axis("off")
        legend_ax.legend(handles=handles, loc="center", frameon=False)
    return _save(fig, folder / "order.png")


# --- report.md ----------------------------------------------------------------------------------


def table_markdown(rows: list[dict], axes) -> str:
    """The results table of ``report.md``: one row per group of :func:`group_runs` (with orders filled in)."""
    names = [name for name, _ in axes if name != "seed"]
    head = [
        *names,
        "steps with",
        "top-1 (%)",
        "top-5 (%)",
        "bases step (ms)",
        "step (ms)",
        "drift",
        "order vs exp (bases / subspaces)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r[n]) for n in names] + [
            r["step_map"] or "none",
            _mean_std(r["top1"], r["top1_std"], r["seeds"]),
            f"{r['top5']:.2f}",
            f"{r['bases_step_ms']:.3f}",
            f"{r['step_ms']:.2f}",
            f"{r['drift']:.1e}",
            f"{r['order_bases']} / {r['order_subspaces']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _orders_table(orders: list[dict]) -> str:
    lines = ["| map | kind | n | k | order (bases) | order (subspaces) |", "|---|---|---|---|---|---|"]
    for o in orders:
        if o["kind"] == "retraction":
            lines.append(
                f"| {o['name']} | step vs exp | {o['n']} | {o['k']} | {order_text(o['bases_slope'])} | "
                f"{order_text(o['subspace_slope'])} |"
            )
        else:
            lines.append(f"| {o['name']} | transport vs parallel | {o['n']} | {o['k']} | {order_text(o['slope'])} | |")
    return "\n".join(lines)


def _describe(plan, data: DataSplits, runs: list[dict], seconds: float, trained: int) -> str:
    b = plan.base
    grid = "; ".join(f"{name} = {', '.join(map(str, values))}" for name, values in plan.axes)
    return (
        f"Data: **{data.name}** ({len(data.train)} train / {len(data.test)} test images of "
        f"{'x'.join(map(str, data.image_shape))}, {data.num_classes} classes; subsets drawn once with seed 0). "
        f"Model: {b.backbone} (width {b.width}) with a GCR head (scale {b.scale:g}, logit {b.logit}), trained from "
        f"scratch with the `{b.optimizer}` recipe: lr {b.lr:g}, momentum {b.momentum:g}, weight decay "
        f"{b.weight_decay:g} (never on the bases), {b.schedule} schedule with {b.warmup_epochs:g} warm-up epoch(s), "
        f"{b.epochs} epochs, batch {b.batch_size}, device {b.device}. Grid: {grid}. {len(runs)} runs "
        f"({trained} trained now, {len(runs) - trained} read from `cells/`) in {seconds:.0f} s. Step times are "
        f"the fastest of 50 steps on a fixed gradient after training (medians in `results.csv`); they depend on "
        f"the machine and its load: compare them within one report only."
    )


def write_report(
    folder: str | os.PathLike, plan, data: DataSplits, runs: list[dict], *, seconds: float, trained: int
) -> dict[str, Any]:
    """Write ``report.md``, ``results.csv``, ``sweep.json`` and the plots; return what ``sweep.json`` holds.

    Parameters
    ----------
    folder : path-like
        Created if needed; these files in it are replaced.
    plan : SweepPlan
        What was run.
    data : DataSplits
        The data the runs trained on.
    runs : list of dict
        One record per cell, in grid order.
    seconds : float
        Wall time of the sweep.
    trained : int
        How many runs were trained now (the rest were read back).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = group_runs(runs, plan.axes)
    orders = measure_orders(rows)
    for row in rows:
        row |= _orders_of(orders, row)
    with atomic_write(folder / "results.csv") as f:
        f.write(results_csv(runs, plan.axes, orders).encode())
    plots = [
        plot_accuracy(rows, folder),
        plot_curves(rows, folder, plan.axes),
        plot_cost(rows, folder),
        plot_orders(orders, folder),
    ]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n\n".join(
        [
            f"# Sweep on {data.name}" + (" (quick)" if plan.quick else ""),
            f"Measured {stamp} with torch {torch.__version__} on {platform.machine()} ({os.cpu_count()} CPUs, "
            f"{torch.get_num_threads()} torch threads).",
            _describe(plan, data, runs, seconds, trained),
            "## Results (mean ± std over seeds)",
            table_markdown(rows, plan.axes),
            "## Order of agreement with the exponential map",
            "Measured in float64 by the log-log slope of the error over t = 1e-3 ... 1e-1, minus one "
            "(`exact`: every error below 1e-12). `steps with` is the map the optimizer steps the bases with: "
            "the cell's retraction, in either momentum style.",
            _orders_table(orders),
            "## Reading",
            "\n".join(f"- {line}" for line in reading(rows, plan.axes)),
            "## Plots",
            *(f"![{name[:-4]}]({name})" for name in plots),
        ]
    )
    with atomic_write(folder / "report.md") as f:
        f.write((text + "\n").encode())
    summary = {
        "plan": {"base": plan.base.to_dict(), "axes": [[n, list(v)] for n, v in plan.axes], "quick": plan.quick},
        "data": {"name": data.name, "num_train": len(data.train), "num_test": len(data.test)},
        "runs": runs,
        "groups": rows,
        "orders": orders,
        "seconds": seconds,
        "trained": trained,
        "files": ["report.md", "results.csv", "sweep.json", *plots],
    }
    write_json(folder / "sweep.json", summary)
    return summary
