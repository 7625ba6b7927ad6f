r"""The research harness: one model trained over a grid of geometric and training choices.

:func:`sweep` trains the same classifier (by default the demo's MLP with a GCR
head on the demo data) once per *cell* of a grid (see
:mod:`grassmann_cls.experiments.sweep_plan` for the axes: retraction, transport, momentum
mode, logit, ``k``, lr, seed), and
:func:`~grassmann_cls.experiments.sweep_report.write_report` turns the runs into
``report.md``, ``results.csv``, ``sweep.json`` and plots.

Every run records the test accuracy after every epoch, the wall time of one
optimizer step (whole model, and the class bases alone; fastest of 50 on a
fixed gradient after training), and the orthonormality drift
:math:`\max_c \|S_c^T S_c - I\|_F` of the trained bases (see
:mod:`grassmann_cls.experiments.diagnostics`). The report adds, once per step map and
``k``, the measured order of agreement of that map with the exponential map.
Both momentum styles step with the cell's retraction (see
:class:`~grassmann_cls.optim.RiemannianSGD`), so no two cells compute the same
thing; ``momentum="paper"`` never transports its buffer, so its cells with a
transport other than ``projection`` are left out of the plan, each reason
printed on stderr (:attr:`~grassmann_cls.experiments.sweep_plan.SweepPlan.dropped`).

**Resuming.** Each finished run is one JSON file under ``output/cells/``, written
atomically and named by its axis values and a hash of its whole configuration
and data (:func:`cell_key`). A sweep started again skips every cell whose file
holds the same hash, so an interrupted sweep continues where it stopped, and a
changed setting (epochs, data size, ...) re-runs the cells it affects instead
of reusing stale results.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from grassmann_cls.errors import ConfigError
from grassmann_cls.experiments.diagnostics import orthonormality_drift, time_optimizer_step
from grassmann_cls.experiments.runner import run_cells
from grassmann_cls.experiments.sweep_plan import SweepPlan, load_data, plan_sweep, step_map
from grassmann_cls.experiments.sweep_report import write_report
from grassmann_cls.head import GrassmannHead
from grassmann_cls.training.checkpoint import write_json
from grassmann_cls.training.data import DataSplits
from grassmann_cls.training.models import build_model
from grassmann_cls.training.train import train

__all__ = ["CELL_FORMAT", "run_cell", "cell_key", "cell_path", "sweep"]

CELL_FORMAT = "grassmann-cls-sweep-cell/2"
"""The ``format`` of a stored cell; cells of another format are re-run."""
_NOT_HASHED = ("output", "overwrite", "resume", "progress", "eval_batch_size")
# Fields added after cells were stored, hashed only when set, so that stored cells keep their keys.
_HASHED_WHEN_SET = {"reorth_qr": "sign_fixed", "reorth_count_from": 1}


def run_cell(plan: SweepPlan, cell: Mapping[str, Any], data: DataSplits) -> dict[str, Any]:
    """Train one cell and measure it; a JSON-friendly dict (what ``cells/*.json`` holds).

    ``data`` is the plan's data (see :func:`~grassmann_cls.experiments.sweep_plan.load_data`).
    """
    config = plan.config(cell)
    began = time.perf_counter()
    result = train(config, data=data)
    seconds = time.perf_counter() - began
    model = result.model
    head = model.fc
    assert isinstance(head, GrassmannHead), "a sweep trains GCR heads (plan_sweep refuses others)"
    record = {
        "format": CELL_FORMAT,
        "key": cell_key(plan, cell, data),
        "cell": dict(cell),
        "config": config.to_dict(),
        "step_map": step_map(config),
        "n": head.in_features,
        "history": result.history,
        "final": result.metrics,
        "train_seconds": seconds,
        "drift": orthonormality_drift(head.bases),
    }
    return record | time_optimizer_step(model, config, data)


def cell_key(plan: SweepPlan, cell: Mapping[str, Any], data: DataSplits) -> str:
    """Hash of everything that determines a cell's result: its configuration, the data, :data:`CELL_FORMAT`."""
    config = {
        k: v
        for k, v in plan.config(cell).to_dict().items()
        if k not in _NOT_HASHED and not (k in _HASHED_WHEN_SET and v == _HASHED_WHEN_SET[k])
    }
    what = {"format": CELL_FORMAT, "config": config, "data": [data.name, len(data.train), len(data.test)]}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def cell_path(folder: Path, cell: Mapping[str, Any], key: str) -> Path:
    """``folder/cells/<axis-value_...>-<key>.json``."""
    slug = "_".join(f"{name}-{value}" for name, value in cell.items())
    return Path(folder) / "cells" / f"{re.sub(r'[^A-Za-z0-9.=-]+', '-', slug)}-{key[:8]}.json"


def _load_finished(path: Path, key: str) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and record.get("format") == CELL_FORMAT and record.get("key") == key
    return record if ok else None


def _run_pending(plan, pending, data, folder: Path, jobs: int, bar) -> list[dict]:
    def save(record: dict) -> None:
        write_json(cell_path(folder, record["cell"], record["key"]), record)
        bar.update(1)
        bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in record["cell"].items()), refresh=False)

    return run_cells(run_cell, plan, pending, data=data, load_data=load_data, jobs=jobs, on_result=save)


def sweep(
    output: str | os.PathLike = "runs/sweep",
    *,
    grid: Mapping[str, Sequence] | None = None,
    seeds: int | None = None,
    quick: bool = False,
    dataset: str = "auto",
    data_dir: str | None = None,
    base: Mapping[str, Any] | None = None,
    jobs: int = 1,
    rerun: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every cell of a grid (skipping finished ones) and write the report to ``output``.

    Parameters
    ----------
    output : path-like
        Folder of ``cells/``, ``report.md``, ``results.csv``, ``sweep.json`` and the plots.
    grid, seeds, quick, dataset, data_dir, base
        See :func:`~grassmann_cls.experiments.sweep_plan.plan_sweep`.
    jobs : int
        Worker processes (one thread each); 1 trains in this process.
    rerun : bool
        Train every cell again, replacing stored results.
    progress : bool
        A progress bar over the cells on stderr.

    Returns
    -------
    dict
        What ``sweep.json`` holds: ``plan, runs, groups, orders, seconds, trained, files``.
    """

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be an integer >= 1; got {jobs!r}")
    plan = plan_sweep(grid, seeds=seeds, quick=quick, dataset=dataset, data_dir=data_dir, base=base)
    for cell, reason in plan.dropped:
        print(f"sweep: {', '.join(f'{k}={v}' for k, v in cell.items())}: {reason}", file=sys.stderr)
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {folder} exists and is not a folder; choose another --output")
    began = time.perf_counter()
    data = load_data(plan)
    widest = plan.base.replace(subspace_dim=max(plan.config(c).subspace_dim for c in plan.cells()))
    build_model(widest, data.image_shape, data.num_classes)  # k > n fails here, before any training
    cells = plan.cells()
    keys = [cell_key(plan, cell, data) for cell in cells]
    done = {} if rerun else {i: _load_finished(cell_path(folder, c, k), k) for i, (c, k) in enumerate(zip(cells, keys))}
    pending = [cell for i, cell in enumerate(cells) if done.get(i) is None]
    with tqdm(
        total=len(cells),
        initial=len(cells) - len(pending),
        desc="sweep",
        unit="run",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        fresh = {r["key"]: r for r in _run_pending(plan, pending, data, folder, jobs, bar)}
    runs = [done.get(i) or fresh[k] for i, k in enumerate(keys)]
    return write_report(folder, plan, data, runs, seconds=time.perf_counter() - began, trained=len(pending))
