"""One process-pool runner for the experiments: the demo's runs and the sweep's cells.

Each cell is trained by a module-level function ``task(setup, cell, data)``.
With ``jobs > 1`` the cells run in ``spawn``-started worker processes, one
thread each, and every worker loads the data once (``load_data(setup)``) when
it starts; otherwise they run one after the other in this process on the
``data`` given.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["can_spawn", "run_cells"]

_WORKER_DATA: Any = None


def can_spawn() -> bool:
    """Whether worker processes can re-import ``__main__`` (not so for stdin or some notebooks)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return getattr(main, "__spec__", None) is not None or (path is not None and Path(path).is_file())


def _init_worker(load_data: Callable[[Any], Any], setup: Any) -> None:
    global _WORKER_DATA
    torch.set_num_threads(1)
    _WORKER_DATA = load_data(setup)


def _run_in_worker(task: Callable[[Any, Any, Any], dict], setup: Any, cell: Any) -> dict:
    return task(setup, cell, _WORKER_DATA)


def run_cells(
    task: Callable[[Any, Any, Any], dict],
    setup: Any,
    cells: Sequence[Any],
    *,
    data: Any,
    load_data: Callable[[Any], Any],
    jobs: int,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """``task(setup, cell, data)`` for every cell, in worker processes when ``jobs > 1``.

    Parameters
    ----------
    task : callable
        A module-level function (workers import it by name) returning a dict.
    setup : picklable
        What every cell shares (the demo's settings, the sweep's plan).
    cells : sequence
        One entry per run.
    data : object
        The data, used when the cells run in this process.
    load_data : callable
        ``load_data(setup)`` loads the same data in each worker (module-level).
    jobs : int
        Worker processes; 1 (or a single cell, or a ``__main__`` that
        workers cannot re-import) runs in this process.
    on_result : callable, optional
        Called with each result as it arrives (to save it, advance a progress bar).

    Returns
    -------
    list of dict
        The results in order of completion (the order of ``cells`` when run in this process).
    """
    results: list[dict] = []

    def finish(record: dict) -> None:
        if on_result is not None:
            on_result(record)
        results.append(record)

    if jobs <= 1 or len(cells) <= 1 or not can_spawn():
        for cell in cells:
            finish(task(setup, cell, data))
        return results
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_init_worker, initargs=(load_data, setup)
    ) as pool:
        futures = [pool.submit(_run_in_worker, task, setup, cell) for cell in cells]
        for future in concurrent.futures.as_completed(futures):
            finish(future.result())
    return results
