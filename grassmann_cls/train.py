r"""Training: ``train(config) -> TrainResult``.

One run trains ``build_model(config)`` with the configured optimizer and
per-step schedule, evaluates on the test split after every epoch and, with an
``output`` folder, writes after every epoch:

``checkpoint.pt``
    model, optimizer, scheduler, RNG states, epoch, step, config and history,
    written atomically (see :mod:`grassmann_cls.checkpoint`), so a crash never
    destroys the last good checkpoint;
``metrics.json``
    the configuration, the data, per-epoch metrics and the final metrics.

# Note [reproducible batches]
# The order of epoch e is randperm(N) from a generator seeded with
# (seed, e) alone, not from a running RNG, so a run resumed at an epoch
# boundary sees exactly the batches of the uninterrupted run. Model
# initialisation uses the global torch RNG seeded with ``seed``; its state is
# saved in every checkpoint and restored on resume.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .backbones import Backbone
from .checkpoint import (
    FORMAT,
    check_manifold_parameters,
    load_checkpoint,
    plain_state_dict,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from .config import TrainConfig
from .data import DataSplits, prepare
from .errors import CheckpointError, ConfigError, DataError, NonFiniteError
from .evaluate import evaluate_model, topk_correct
from .losses import cross_entropy
from .models import build_model
from .recipe import OPTIMIZERS, build_scheduler

__all__ = ["TrainResult", "train", "prepare_data", "epoch_batches", "steps_per_epoch", "CHECKPOINT", "METRICS"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
# Fields that may differ between a checkpoint's run and its resumed run.
_RESUME_FREE = {"output", "overwrite", "resume", "progress", "device", "eval_batch_size", "data_dir"}


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : Backbone
        The trained model, in evaluation mode.
    config : TrainConfig
        The configuration used.
    history : list of dict
        One entry per epoch: ``epoch, lr, train_loss, train_top1, test_loss,
        test_top1, test_top5, seconds``.
    data : dict
        ``name, num_classes, image_shape, class_names, source, num_train, num_test``.
    output, checkpoint : Path or None
        The output folder and the last checkpoint (``None`` without ``output``).
    """

    model: Backbone
    config: TrainConfig
    history: list[dict[str, float]]
    data: dict[str, Any]
    output: Path | None = None
    checkpoint: Path | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """The last epoch's entry of :attr:`history`."""
        return self.history[-1] if self.history else {}


def prepare_data(config: TrainConfig) -> DataSplits:
    """The data of ``config``: data set, classes, subsets (seeded by ``config.seed``), image size."""
    return prepare(
        config.dataset, data_dir=config.data_dir, classes=config.classes, train_size=config.train_size,
        test_size=config.test_size, image_size=config.image_size, seed=config.seed,
    )  # fmt: skip


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Batches per epoch; a last batch of a single sample is dropped (BatchNorm needs two)."""
    full, rest = divmod(num_samples, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Index batches of one epoch, a function of ``(seed, epoch)`` only (Note [reproducible batches])."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    batches = list(torch.randperm(num_samples, generator=generator).split(batch_size))
    return batches[: steps_per_epoch(num_samples, batch_size)]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
    return torch.device(name)


def _output_folder(config: TrainConfig) -> Path | None:
    """Check (without writing) that ``config.output`` may receive this run."""
    if config.output is None:
        return None
    folder = Path(config.output)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {folder} exists and is not a folder; choose another --output")
    existing = folder / CHECKPOINT
    resuming_here = config.resume is not None and Path(config.resume).resolve() == existing.resolve()
    if existing.exists() and not (config.overwrite or resuming_here):
        raise ConfigError(
            f"{folder} already holds a run ({CHECKPOINT}); pass --overwrite, --resume {existing}, or another --output"
        )
    return folder


def _data_info(splits: DataSplits) -> dict[str, Any]:
    return {"name": splits.name, "num_classes": splits.num_classes, "image_shape": list(splits.image_shape),
            "class_names": list(splits.class_names), "source": splits.source,
            "num_train": len(splits.train), "num_test": len(splits.test)}  # fmt: skip


def _check_resume(payload: dict, config: TrainConfig, info: dict) -> None:
    saved = payload["config"]
    differ = sorted(k for k, v in config.to_dict().items() if k not in _RESUME_FREE and saved.get(k) != v)
    if differ:
        raise ConfigError(f"cannot resume {config.resume}: settings {differ} differ from the checkpoint's")
    if payload["data"]["num_classes"] != info["num_classes"] or payload["data"]["image_shape"] != info["image_shape"]:
        raise CheckpointError(f"checkpoint {config.resume} was trained on other data ({payload['data']['name']})")
    if int(payload["epoch"]) >= config.epochs:
        raise ConfigError(f"{config.resume} already finished all {config.epochs} epochs; nothing to resume")


def _restore(payload: dict, model, optimizer, scheduler) -> None:
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        set_rng_state(payload["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint does not match the model or optimizer ({first})") from None
    check_manifold_parameters(model, "checkpoint")


def _train_epoch(model, optimizer, scheduler, data, config: TrainConfig, epoch: int, device, bar) -> dict:
    model.train()
    images, labels = data.tensors
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for step, index in enumerate(epoch_batches(len(labels), config.batch_size, config.seed, epoch)):
        x, y = images[index].to(device), labels[index].to(device)
        logits = model(x)
        loss = cross_entropy(logits, y, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach().double() * len(y)
        correct += topk_correct(logits.detach(), y, (1,))[0]
        count += len(y)
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss.detach()):.3f}", refresh=False)
    train_loss = float(loss_sum) / count
    if not math.isfinite(train_loss):
        raise NonFiniteError(f"training diverged: the loss is {train_loss} in epoch {epoch + 1}; lower --lr")
    return {"train_loss": train_loss, "train_top1": 100.0 * int(correct) / count}


class _Run:
    """The state of one training run: model, optimizer, schedule, history; one method per epoch."""

    def __init__(self, config: TrainConfig, splits: DataSplits, folder: Path | None):
        self.config, self.splits, self.folder = config, splits, folder
        self.info = _data_info(splits)
        self.device = _device(config.device)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.model = build_model(config, splits.image_shape, splits.num_classes).to(self.device)
        self.optimizer = OPTIMIZERS.resolve(config.optimizer)(self.model, config)
        self.per_epoch = steps_per_epoch(len(splits.train), config.batch_size)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, total_steps=config.epochs * self.per_epoch,
                                         warmup_steps=round(config.warmup_epochs * self.per_epoch))  # fmt: skip
        self.history: list[dict] = []
        self.checkpoint: Path | None = None

    def epoch(self, epoch: int, bar) -> dict:
        """Train epoch ``epoch`` (0-based), evaluate, save; returns its history entry."""
        began = time.perf_counter()
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
        record |= _train_epoch(self.model, self.optimizer, self.scheduler, self.splits.train, self.config, epoch,
                               self.device, bar)  # fmt: skip
        test = evaluate_model(self.model, self.splits.test, batch_size=self.config.eval_batch_size)
        record |= {"test_loss": test["loss"], "test_top1": test["top1"], "test_top5": test["top5"],
                   "seconds": time.perf_counter() - began}  # fmt: skip
        self.history.append(record)
        bar.set_postfix(epoch=epoch + 1, test_top1=f"{test['top1']:.2f}")
        if self.folder is not None:
            self.checkpoint = self.save(epoch + 1)
        return record

    def save(self, epochs_done: int) -> Path:
        """Write ``checkpoint.pt`` and ``metrics.json`` atomically."""
        config = self.config.to_dict()
        state = {"format": FORMAT, "config": config, "data": self.info, "epoch": epochs_done,
                 "step": epochs_done * self.per_epoch, "model": plain_state_dict(self.model),
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": rng_state(), "history": self.history}  # fmt: skip
        path = save_checkpoint(self.folder / CHECKPOINT, state)
        write_json(self.folder / METRICS, {"config": config, "data": self.info, "history": self.history,
                                           "final": self.history[-1]})  # fmt: skip
        return path


def train(
    config: TrainConfig, *, data: DataSplits | None = None, on_epoch_end: Callable[[dict], None] | None = None
) -> TrainResult:
    """Train the model of ``config``; see the module docstring for what is written.

    Parameters
    ----------
    config : TrainConfig
        The whole configuration (validated on construction).
    data : DataSplits, optional
        Already prepared data (e.g. shared by many runs); default
        :func:`prepare_data` of ``config``.
    on_epoch_end : callable, optional
        Called with each epoch's history entry after its checkpoint is saved
        (progress reports, early stopping by raising).

    Returns
    -------
    TrainResult

    Raises
    ------
    GrassmannError
        Bad configuration (:class:`ConfigError`, ``ShapeError`` e.g. for
        ``k > n``), data (:class:`DataError`), checkpoint
        (:class:`CheckpointError`) or divergence (:class:`NonFiniteError`),
        all before anything is written except divergence.
    """
    folder = _output_folder(config)
    payload = load_checkpoint(config.resume) if config.resume else None
    splits = data if data is not None else prepare_data(config)
    if len(splits.train) < 2:
        raise DataError(f"training needs at least 2 samples; {splits.name} has {len(splits.train)}")
    run = _Run(config, splits, folder)
    if payload is not None:
        _check_resume(payload, config, run.info)
        _restore(payload, run.model, run.optimizer, run.scheduler)
        run.history = list(payload.get("history", []))
    desc = config.head + (f" k={config.subspace_dim}" if config.head == "gcr" else "")
    with tqdm(total=config.epochs * run.per_epoch, initial=len(run.history) * run.per_epoch, desc=desc,
              disable=not config.progress, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:  # fmt: skip
        for epoch in range(len(run.history), config.epochs):
            record = run.epoch(epoch, bar)
            if on_epoch_end is not None:
                on_epoch_end(record)
    return TrainResult(run.model.eval(), config, run.history, run.info, folder, run.checkpoint)
