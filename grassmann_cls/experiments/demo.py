r"""The demo: softmax, cosine softmax and GCR over ``k`` and seeds, with analysis and transfer.

For every head (``softmax``, ``cosine``, GCR with each ``k``) and seed, one run
trains an MLP on the main data set, then measures on the test split: top-1 /
top-5 accuracy, intra-class variability and class separation :math:`R^2` of
the penultimate features, principal angles between class subspaces, and the
linear-transfer accuracy of the frozen features on a second data set:

=================  ==========================================================
main data set      transfer target
=================  ==========================================================
Fashion-MNIST      scikit-learn's digits, resized from 8 x 8 to 28 x 28
digits (fallback)  digits classes 5-9, the model trained on classes 0-4
=================  ==========================================================

``runs/demo/`` receives ``report.md`` (a table in the layout of the paper's
Table 3 and a reading of it), ``metrics.json`` (every run) and PNG plots.
Runs go to ``jobs`` worker processes with one thread each (the MLPs are too
small for intra-op threads to pay off on a shared machine). Workers are
started with ``spawn``, so a script calling :func:`demo` with ``jobs > 1``
needs the usual ``if __name__ == "__main__":`` guard; where ``__main__``
cannot be re-imported (stdin, some notebooks) the runs stay in-process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from grassmann_cls.errors import ConfigError
from grassmann_cls.experiments.demo_report import write_report
from grassmann_cls.experiments.runner import run_cells
from grassmann_cls.experiments.transfer import PROBES, transfer
from grassmann_cls.training.analysis import class_principal_angles, distinct_pairs, feature_statistics
from grassmann_cls.training.backbones import extract_features
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import DataSplits, digits, find_fashion_mnist, prepare, resize_images, split_classes
from grassmann_cls.training.train import train

__all__ = ["DemoSettings", "demo_settings", "run_cell", "demo", "load_demo_data"]


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """What the demo trains; :func:`demo_settings` fills it for the chosen data and size.

    Attributes
    ----------
    dataset : str
        ``"fashion_mnist"`` or ``"digits"``.
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    quick : bool
        The < 1 minute version (fewer samples, epochs and seeds).
    subspace_dims, seeds : tuple of int
        GCR ``k`` values and seeds.
    heads : tuple of str
        Vector heads trained besides GCR.
    epochs, batch_size, width, train_size, test_size : int or None
        Training set-up (``width`` of the MLP backbone).
    lr, warmup_epochs : float
        Peak lr (SGD, momentum 0.9, cosine schedule) and warm-up length.
    classes : tuple of int, optional
        Classes of the main data set used for training.
    probe : str
        A :data:`~grassmann_cls.experiments.transfer.PROBES` name.
    """

    dataset: str
    data_dir: str | None
    quick: bool
    subspace_dims: tuple[int, ...]
    seeds: tuple[int, ...]
    heads: tuple[str, ...] = ("softmax", "cosine")
    epochs: int = 6
    batch_size: int = 128
    width: int = 256
    train_size: int | None = None
    test_size: int | None = None
    lr: float = 0.1
    warmup_epochs: float = 1.0
    classes: tuple[int, ...] | None = None
    probe: str = "logistic"

    def config(self, head: str, k: int, seed: int) -> TrainConfig:
        """The :class:`TrainConfig` of one run (no output folder, no progress bar)."""
        gcr_only: dict[str, Any] = {"subspace_dim": k} if head == "gcr" else {}
        return TrainConfig(
            dataset=self.dataset,
            data_dir=self.data_dir,
            classes=self.classes,
            train_size=self.train_size,
            test_size=self.test_size,
            backbone="mlp",
            width=self.width,
            head=head,
            **gcr_only,
            lr=self.lr,
            warmup_epochs=self.warmup_epochs,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=seed,
            progress=False,
        )

    def cells(self) -> list[tuple[str, int, int]]:
        """``(head, k, seed)`` of every run; ``k = 0`` for vector heads."""
        heads = [(h, 0) for h in self.heads] + [("gcr", k) for k in self.subspace_dims]
        return [(h, k, s) for h, k in heads for s in self.seeds]


def demo_settings(
    *, quick: bool = False, dataset: str = "auto", data_dir: str | None = None, **overrides
) -> DemoSettings:
    """Settings for ``dataset`` (``auto``: Fashion-MNIST when installed, else digits).

    Parameters
    ----------
    quick : bool
        Under a minute: small subsets, 2 epochs (digits: 8), 2 seeds.
    dataset : {"auto", "fashion_mnist", "digits"}
        The main data set.
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    **overrides
        Any :class:`DemoSettings` field (e.g. ``seeds``, ``epochs``); unknown
        names raise :class:`ConfigError`.
    """
    key = dataset.replace("-", "_")
    if key == "auto":
        key = "fashion_mnist" if find_fashion_mnist(data_dir) is not None else "digits"
    if key not in ("fashion_mnist", "digits"):
        raise ConfigError(f"the demo runs on fashion_mnist or digits (or auto); got {dataset!r}")
    base: dict[str, Any] = {
        "dataset": key,
        "data_dir": data_dir,
        "quick": quick,
        "subspace_dims": (1, 2, 4, 8, 16),
        "seeds": (0, 1) if quick else (0, 1, 2),
    }
    if key == "fashion_mnist":
        base |= {"epochs": 2, "train_size": 2000, "test_size": 1000} if quick else {"epochs": 6}
    else:
        base |= {"classes": (0, 1, 2, 3, 4), "epochs": 8 if quick else 30, "warmup_epochs": 1.0 if quick else 3.0}
    known = {f.name for f in dataclasses.fields(DemoSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown demo settings {unknown}; known are {', '.join(sorted(known))}")
    settings = DemoSettings(**(base | {k: v for k, v in overrides.items() if v is not None}))
    PROBES.resolve(settings.probe)
    settings.config("gcr", max(settings.subspace_dims, default=1), 0)  # validates every number early
    if not settings.seeds or not settings.subspace_dims:
        raise ConfigError("the demo needs at least one seed and one subspace dimension")
    return settings


def load_demo_data(settings: DemoSettings) -> tuple[DataSplits, DataSplits]:
    """``(main, transfer_target)`` data of the demo (see the module table)."""
    main = prepare(
        settings.dataset,
        data_dir=settings.data_dir,
        classes=settings.classes,
        train_size=settings.train_size,
        test_size=settings.test_size,
        seed=0,
    )
    if settings.dataset == "digits":
        return main, split_classes(digits(), range(5, 10))
    return main, resize_images(digits(), main.image_shape[1:])


def run_cell(settings: DemoSettings, cell: tuple[str, int, int], data: tuple[DataSplits, DataSplits]) -> dict[str, Any]:
    """Train one run and measure it (accuracy, analysis, transfer); a JSON-friendly dict.

    ``cell`` is ``(head, k, seed)``; ``data`` is ``(main, target)`` (see :func:`load_demo_data`).
    """
    head, k, seed = cell
    main, target = data
    began, cpu = time.perf_counter(), time.process_time()
    result = train(settings.config(head, max(k, 1), seed), data=main)
    trained = time.perf_counter()
    features, labels = extract_features(result.model, main.test)
    stats = feature_statistics(features, labels, result.model.fc)
    probe = transfer(result.model, target, probe=settings.probe, seed=seed)
    angles = torch.rad2deg(distinct_pairs(class_principal_angles(result.model.fc)))
    final = result.metrics
    return {
        "head": head,
        "k": k,
        "seed": seed,
        "top1": final["test_top1"],
        "top5": final["test_top5"],
        "train_top1": final["train_top1"],
        **stats,
        "transfer": probe.accuracy,
        "principal_angles": angles.flatten().tolist() if head == "gcr" else [],
        "train_seconds": trained - began,
        "seconds": time.perf_counter() - began,
        "cpu_seconds": time.process_time() - cpu,
        "history": result.history,
    }


def _run_all(settings: DemoSettings, data, jobs: int, progress: bool) -> list[dict]:
    cells = settings.cells()
    with tqdm(total=len(cells), desc="demo runs", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        results = run_cells(
            run_cell, settings, cells, data=data, load_data=load_demo_data, jobs=jobs, on_result=lambda _: bar.update(1)
        )
    order = {cell: i for i, cell in enumerate(cells)}
    return sorted(results, key=lambda r: order[(r["head"], r["k"], r["seed"])])


def demo(
    output: str | os.PathLike = "runs/demo",
    *,
    quick: bool = False,
    dataset: str = "auto",
    data_dir: str | None = None,
    jobs: int | None = None,
    progress: bool = True,
    **overrides,
) -> dict[str, Any]:
    """Run the demo and write ``report.md``, ``metrics.json`` and plots to ``output``.

    Parameters
    ----------
    output : path-like
        Folder of the report (created; files in it are replaced).
    quick : bool
        The < 1 minute version.
    dataset, data_dir, **overrides
        See :func:`demo_settings`.
    jobs : int, optional
        Worker processes (default: up to 2, one per core); 1 runs in-process.
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    dict
        What ``metrics.json`` holds: ``settings, data, runs, table, seconds, files``.
    """

    settings = demo_settings(quick=quick, dataset=dataset, data_dir=data_dir, **overrides)
    jobs = min(2, os.cpu_count() or 1) if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1; got {jobs}")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output} exists and is not a folder; choose another --output")
    began = time.perf_counter()
    main, target = load_demo_data(settings)
    note = "" if settings.dataset == "fashion_mnist" else " (Fashion-MNIST not found; `make data` installs it)"
    print(
        f"demo: {len(settings.cells())} runs on {main.name} from {main.source}{note}, transfer to {target.name}, "
        f"{jobs} worker process(es)",
        flush=True,
    )
    runs = _run_all(settings, (main, target), jobs, progress)
    seconds = time.perf_counter() - began
    return write_report(output, settings, main, target, runs, seconds=seconds, jobs=jobs)
