r"""The OOD and long-tail study on Fashion-MNIST (``grassmann-cls ood-study``).

Two parts, every run with the demo's MLP (width 256, SGD, cosine schedule,
one warm-up epoch), ``epochs`` epochs (default 5) on a stratified subset of
``train_size`` training images (default 10000), over ``seeds``:

open set
    Trained on classes 0-5 (T-shirt, trouser, pullover, dress, coat, sandal);
    OOD sets ``heldout`` (shirt, sneaker, bag, ankle boot: near OOD),
    ``digits`` (resized to 28 x 28: far OOD) and the two noise sets. Heads:
    softmax and cosine, GCR with each ``k``; every score that applies to the
    head (:func:`~grassmann_cls.experiments.ood.evaluate_ood`).
long tail
    All ten classes, the training split drawn with imbalance ratio ``R``
    (class 0 the head), softmax against GCR with ``k = lt_subspace_dim``:
    top-1 on the balanced test split and the shot-group accuracies.

``OUTPUT/report.md`` holds the tables (mean and sample standard deviation
over seeds), ``OUTPUT/study.json`` every run, ``OUTPUT/*.png`` the plots and
``OUTPUT/runs/`` every run's checkpoint (so that ``grassmann-cls ood`` can
re-score any of them).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from grassmann_cls.errors import ConfigError
from grassmann_cls.experiments.ood import evaluate_ood, ood_sets
from grassmann_cls.experiments.ood_report import plot_histograms, plot_roc
from grassmann_cls.experiments.ood_study_report import write_study_report
from grassmann_cls.experiments.runner import run_cells
from grassmann_cls.training.checkpoint import write_json
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.train import prepare_data, train

__all__ = ["StudySettings", "study_settings", "load_study_data", "run_study_cell", "ood_study"]

OPEN_CLASSES = (0, 1, 2, 3, 4, 5)
OOD_DATA = "heldout,digits,noise"


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What :func:`ood_study` trains (see the module docstring).

    Attributes
    ----------
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    output : str
        The study folder (run folders go to ``output/runs``).
    seeds, subspace_dims, ratios : tuple
        Seeds, the open-set GCR ``k`` values, the long-tail imbalance ratios.
    lt_subspace_dim : int
        GCR ``k`` of the long-tail runs.
    epochs, width, train_size : int or None
        Training length, MLP width, optional stratified training subset.
    """

    data_dir: str | None
    output: str
    seeds: tuple[int, ...] = (0, 1, 2)
    subspace_dims: tuple[int, ...] = (1, 4, 8, 16)
    ratios: tuple[float, ...] = (10.0, 100.0)
    lt_subspace_dim: int = 8
    epochs: int = 5
    width: int = 256
    train_size: int | None = 10000

    def config(self, cell: tuple) -> TrainConfig:
        """The :class:`TrainConfig` of one cell ``(part, head, k, ratio, seed)``."""
        part, head, k, ratio, seed = cell
        return TrainConfig(
            dataset="fashion_mnist",
            data_dir=self.data_dir,
            train_size=self.train_size,
            classes=OPEN_CLASSES if part == "open" else None,
            imbalance_ratio=ratio,
            backbone="mlp",
            width=self.width,
            head=head,
            epochs=self.epochs,
            warmup_epochs=1.0,
            seed=seed,
            progress=False,
            overwrite=True,
            output=str(Path(self.output) / "runs" / _run_name(cell)),
            **({"subspace_dim": k} if head == "gcr" else {}),
        )

    def cells(self) -> list[tuple]:
        """Every run: ``(part, head, k, ratio, seed)``, ``k = 0`` for vector heads."""
        heads = [("softmax", 0), ("cosine", 0)] + [("gcr", k) for k in self.subspace_dims]
        open_set = [("open", h, k, None, s) for h, k in heads for s in self.seeds]
        tail = [
            ("lt", h, k, r, s)
            for r in self.ratios
            for h, k in (("softmax", 0), ("gcr", self.lt_subspace_dim))
            for s in self.seeds
        ]
        return open_set + tail


def _run_name(cell: tuple) -> str:
    part, head, k, ratio, seed = cell
    model = head + (f"{k}" if head == "gcr" else "")
    return f"{part}{'' if ratio is None else f'-R{ratio:g}'}-{model}-seed{seed}"


def study_settings(
    *, data_dir: str | None = None, output: str = "runs/ood-study", quick: bool = False, **overrides
) -> StudySettings:
    """Settings of the study; ``quick``: 1 seed, 1 epoch, 2000 training images, k = 8 (a smoke run)."""
    base: dict[str, Any] = {"data_dir": data_dir, "output": str(output)}
    if quick:
        base |= {"seeds": (0,), "epochs": 1, "train_size": 2000, "subspace_dims": (8,), "ratios": (100.0,)}
    known = {f.name for f in dataclasses.fields(StudySettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown study settings {unknown}; known are {', '.join(sorted(known))}")
    settings = StudySettings(**(base | {k: v for k, v in overrides.items() if v is not None}))
    for cell in settings.cells():
        settings.config(cell)  # validates every number early
    return settings


def load_study_data(settings: StudySettings) -> dict[str | tuple[float, int], Any]:
    """The open-set data and OOD sets, and each long-tailed training set (loaded once per process)."""
    open_cell = ("open", "softmax", 0, None, settings.seeds[0])
    config = settings.config(open_cell)
    splits = prepare_data(config)
    sets = ood_sets(OOD_DATA, config.to_dict(), splits, splits.image_shape, data_dir=settings.data_dir, seed=0)
    data: dict[str | tuple[float, int], Any] = {"open": (splits, sets)}  # "open", and (ratio, seed) per long tail
    for ratio in settings.ratios:
        for seed in settings.seeds:
            data[(ratio, seed)] = prepare_data(settings.config(("lt", "softmax", 0, ratio, seed)))
    return data


def run_study_cell(settings: StudySettings, cell: tuple, data: dict) -> dict[str, Any]:
    """Train one cell; the open-set cells are scored by every applicable OOD score."""
    part, head, k, ratio, seed = cell
    began = time.perf_counter()
    config = settings.config(cell)
    record: dict[str, Any] = {"part": part, "head": head, "k": k, "ratio": ratio, "seed": seed, "run": _run_name(cell)}
    if part == "open":
        splits, sets = data["open"]
        result = train(config, data=splits)
        evaluation = evaluate_ood(result.model, splits, sets)
        record |= evaluation.summary
        if seed == settings.seeds[0] and k in (0, 8):  # example plots: one seed, vector heads and k=8
            folder = Path(settings.output) / "plots" / _run_name(cell)
            folder.mkdir(parents=True, exist_ok=True)
            plot_histograms(evaluation.values, folder)
            plot_roc(evaluation.values, folder)
    else:
        result = train(config, data=data[(ratio, seed)])
        record |= {"train_counts": result.data["train_counts"]}
        record |= {key: result.metrics[f"test_{key}"] for key in ("top1", "many_top1", "medium_top1", "few_top1")}
    record["test_top1"] = result.metrics["test_top1"]
    record["seconds"] = time.perf_counter() - began
    return record


def ood_study(
    output: str | os.PathLike = "runs/ood-study",
    *,
    data_dir: str | None = None,
    quick: bool = False,
    jobs: int | None = None,
    progress: bool = True,
    **overrides,
) -> dict[str, Any]:
    """Run the study and write ``report.md``, ``study.json`` and plots to ``output``.

    Parameters
    ----------
    output : path-like
        The study folder (created; files in it are replaced).
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    quick : bool
        A smoke run (one seed, two epochs, a subset).
    jobs : int, optional
        Worker processes (default: up to 2).
    progress : bool
        Progress bar on stderr.
    **overrides
        Any :class:`StudySettings` field.

    Returns
    -------
    dict
        What ``study.json`` holds: ``settings, runs, open_set, long_tail, seconds``.
    """
    settings = study_settings(data_dir=data_dir, output=str(output), quick=quick, **overrides)
    jobs = min(2, os.cpu_count() or 1) if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1; got {jobs}")
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {folder} exists and is not a folder; choose another -o")
    began = time.perf_counter()
    cells = settings.cells()
    data = load_study_data(settings) if jobs <= 1 else None
    with tqdm(total=len(cells), desc="ood study", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        runs = run_cells(
            run_study_cell,
            settings,
            cells,
            data=data,
            load_data=load_study_data,
            jobs=jobs,
            on_result=lambda _: bar.update(1),
        )
    order = {_run_name(c): i for i, c in enumerate(cells)}
    runs.sort(key=lambda r: order[r["run"]])
    payload = {"settings": dataclasses.asdict(settings), "runs": runs, "seconds": time.perf_counter() - began}
    write_json(folder / "study.json", payload)
    return write_study_report(folder, payload)
