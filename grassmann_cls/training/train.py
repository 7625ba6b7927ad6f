r"""Training: ``train(config) -> TrainResult``.

One run trains ``build_model(config)`` with the configured optimizer and
per-step schedule, evaluates on the test split after every epoch and, with an
``output`` folder, writes after every epoch:

``checkpoint.pt``
    model, optimizer, scheduler, gradient scaler, RNG states, epoch, step,
    position in the epoch, config and history, written atomically (see
    :mod:`grassmann_cls.training.checkpoint`), so a crash never destroys the last good
    checkpoint; with ``checkpoint_every`` also every that many steps;
``metrics.json``
    the configuration, the data, per-epoch metrics and the final metrics.

Started by ``torchrun`` (several processes, :mod:`grassmann_cls.training.distributed`),
every process trains its share of each global batch in
``DistributedDataParallel``; metrics are summed over all processes, and only
rank 0 writes files and shows progress. ``amp`` trains in mixed precision
(:mod:`grassmann_cls.training.precision`). The batches of an epoch depend only
on ``seed`` and the epoch (:mod:`grassmann_cls.training.batches`). Model
initialisation uses the global torch RNG seeded with ``seed``; its state (every
process's) is saved in every checkpoint and restored on resume.

A run resumed from a checkpoint, also one taken in the middle of an epoch,
continues exactly where it stopped: the rest of the run, per-step losses and
epoch metrics included, is the uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from grassmann_cls.errors import CheckpointError, ConfigError, DataError, NonFiniteError
from grassmann_cls.training import precision
from grassmann_cls.training.backbones import Backbone
from grassmann_cls.training.batches import batch_source, epoch_batches, steps_per_epoch
from grassmann_cls.training.checkpoint import (
    CHECKPOINT,
    FORMAT,
    check_manifold_parameters,
    load_checkpoint,
    plain_state_dict,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
)
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import DataSplits, group_accuracies, prepare
from grassmann_cls.training.distributed import (
    Distributed,
    all_gather_rows,
    all_reduce_sum,
    broadcast_buffers,
    environment,
    gather_objects,
    loss_weight,
    process_group,
    shard,
)
from grassmann_cls.training.evaluation import class_sums, evaluation_sums, topk_hits
from grassmann_cls.training.models import build_model
from grassmann_cls.training.recipe import OPTIMIZERS, ScheduleMultiplier, build_scheduler

__all__ = [
    "TrainResult",
    "train",
    "resumed_config",
    "prepare_data",
    "epoch_batches",
    "steps_per_epoch",
    "CHECKPOINT",
    "METRICS",
]

METRICS = "metrics.json"


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
        The output folder and the last checkpoint (``None`` without
        ``output``, and on every process but rank 0).
    rank, world_size : int
        This process's rank and the number of processes (1 without torchrun).
    """

    model: Backbone
    config: TrainConfig
    history: list[dict[str, float]]
    data: dict[str, Any]
    output: Path | None = None
    checkpoint: Path | None = None
    rank: int = 0
    world_size: int = 1

    @property
    def metrics(self) -> dict[str, float]:
        """The last epoch's entry of :attr:`history`."""
        return self.history[-1] if self.history else {}


def prepare_data(config: TrainConfig) -> DataSplits:
    """The data of ``config``: data set, classes, subsets (seeded by ``config.seed``), image size."""
    return prepare(
        config.dataset,
        data_dir=config.data_dir,
        classes=config.classes,
        train_size=config.train_size,
        test_size=config.test_size,
        image_size=config.image_size,
        seed=config.seed,
        imbalance_ratio=config.imbalance_ratio,
    )


def _output_folder(config: TrainConfig) -> Path | None:
    """Check (without writing) that ``config.output`` may receive this run."""
    if config.output is None:
        return None
    folder = Path(config.output)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output {folder} exists and is not a folder; choose another --output")
    existing = folder / CHECKPOINT
    resuming_here = config.resume is not None and Path(config.resume).resolve() in (
        existing.resolve(),
        folder.resolve(),
    )
    if existing.exists() and not (config.overwrite or resuming_here):
        raise ConfigError(
            f"{folder} already holds a run ({CHECKPOINT}); pass --overwrite, --resume {existing}, or another --output"
        )
    return folder


def _data_info(splits: DataSplits) -> dict[str, Any]:
    return {
        "name": splits.name,
        "num_classes": splits.num_classes,
        "image_shape": list(splits.image_shape),
        "class_names": list(splits.class_names),
        "source": splits.source,
        "num_train": len(splits.train),
        "num_test": len(splits.test),
    }


def _check_resume(payload: dict, config: TrainConfig, info: dict, per_epoch: int) -> None:
    TrainConfig.resumed(payload["config"], config.to_dict())  # refuses settings that change the trained part
    if payload["data"]["num_classes"] != info["num_classes"] or payload["data"]["image_shape"] != info["image_shape"]:
        raise CheckpointError(f"checkpoint {config.resume} was trained on other data ({payload['data']['name']})")
    if int(payload["epoch"]) >= config.epochs:
        raise ConfigError(
            f"{config.resume} already finished all {config.epochs} epochs; nothing to resume "
            "(pass more epochs, --epochs, to extend the run)"
        )
    if payload.get("steps_per_epoch", per_epoch) != per_epoch:
        raise ConfigError(
            f"{config.resume} has {payload['steps_per_epoch']} steps per epoch but this run has "
            f"{per_epoch} (a small last batch is dropped for more processes); resume with "
            f"{payload.get('world_size', 1)} processes"
        )


def resumed_config(checkpoint: str | Path, overrides: dict[str, Any]) -> TrainConfig:
    """The configuration that continues the run of ``checkpoint``, with ``overrides``.

    Parameters
    ----------
    checkpoint : path-like
        A ``checkpoint.pt`` or its run folder.
    overrides : dict
        Settings given for the resumed run (see :meth:`TrainConfig.resumed`):
        ``epochs`` may grow, settings in :data:`~grassmann_cls.training.config.RESUME_FREE`
        may change, any other must equal the checkpoint's;
        settings the run never reads are refused by name, even at their defaults.

    Raises
    ------
    CheckpointError, ConfigError
        An unusable checkpoint, or an override that would change the part already trained.
    """
    path = resolve_checkpoint(checkpoint)
    return TrainConfig.resumed(load_checkpoint(path)["config"], {**overrides, "resume": str(path)}, given=overrides)


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


def _check_sizes(config: TrainConfig, num_samples: int, world_size: int) -> None:
    if num_samples < 2 * world_size:
        raise DataError(f"training needs at least 2 samples per process; {num_samples} samples for {world_size}")
    if config.batch_size < 2 * world_size:
        raise ConfigError(
            f"batch_size {config.batch_size} is the global batch: it leaves fewer than 2 samples "
            f"per process for {world_size} processes; use --batch-size >= {2 * world_size}"
        )


def _build_model(config: TrainConfig, splits: DataSplits, ctx: Distributed) -> Backbone:
    model = build_model(config, splits.image_shape, splits.num_classes)
    if config.sync_batchnorm and ctx.world_size > 1:
        if ctx.device.type != "cuda":
            raise ConfigError("sync_batchnorm needs CUDA devices (torch.nn.SyncBatchNorm); drop --sync-batchnorm")
        model = cast(Backbone, nn.SyncBatchNorm.convert_sync_batchnorm(model))  # converts in place, returns model
    return model.to(ctx.device)


class _Run:
    """The state of one training run: model, optimizer, schedule, history, position; one method per epoch."""

    def __init__(self, config: TrainConfig, splits: DataSplits, folder: Path | None, ctx: Distributed):
        self.config, self.splits, self.folder, self.ctx = config, splits, folder, ctx
        self.info = _data_info(splits)
        if config.imbalance_ratio is not None:  # long tail: the per-class training counts
            assert isinstance(splits.train, TensorDataset), "long_tail draws from in-memory data only"
            labels = splits.train.tensors[1]
            self.info["train_counts"] = torch.bincount(labels, minlength=splits.num_classes).tolist()
        self.device = ctx.device
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        self.model = _build_model(config, splits, ctx)
        if ctx.rank:  # its own stream for random layers; rank 0 keeps the 1-process run's
            torch.manual_seed(config.seed * 1_000_003 + 7919 * ctx.rank)
        self.optimizer = OPTIMIZERS.resolve(config.optimizer)(self.model, config)
        self.per_epoch = steps_per_epoch(len(splits.train), config.batch_size, ctx.world_size)
        self.scheduler = build_scheduler(
            self.optimizer,
            config.schedule,
            total_steps=config.epochs * self.per_epoch,
            warmup_steps=round(config.warmup_epochs * self.per_epoch),
        )
        self.scaler = precision.grad_scaler(self.device, config.amp)
        self.network: nn.Module = self.model
        self.history: list[dict] = []
        self.checkpoint: Path | None = None
        self.step = 0  # optimizer steps done
        self.position = 0  # steps done in the current epoch
        self.sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, hits, samples

    # Note [mid-epoch checkpoints]
    # A checkpoint written after step s of epoch e stores epoch = e (completed
    # epochs), epoch_step = s and every process's partial sums of the epoch's
    # training loss, hits and samples. Resuming trains batches s+1.. of epoch e's
    # fixed order with the restored model, optimizer (momentum), scheduler,
    # gradient scaler and RNG states, so the rest of the run, per-step losses and
    # epoch metrics included, is the uninterrupted run's.
    def restore(self, payload: dict) -> None:
        """Continue from a checkpoint (Note [mid-epoch checkpoints])."""
        _restore(payload, self.model, self.optimizer, self.scheduler)
        self.extend_schedule()
        ranks = payload.get("rng_ranks")
        if ranks is not None and len(ranks) == self.ctx.world_size:
            set_rng_state(ranks[self.ctx.rank])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.history = list(payload.get("history", []))
        self.step = int(payload.get("step", len(self.history) * self.per_epoch))
        self.position = int(payload.get("epoch_step", 0))
        sums = payload.get("epoch_sums")
        if self.position and sums is not None:
            sums = torch.as_tensor(sums, dtype=torch.float64).reshape(-1, 3)
            if len(sums) != self.ctx.world_size:  # another number of processes: rank 0 carries the total
                sums = torch.cat([sums.sum(0, keepdim=True), sums.new_zeros(self.ctx.world_size - 1, 3)])
            self.sums = sums[self.ctx.rank].to(self.device)

    def extend_schedule(self) -> None:
        """Recompute the restored schedule over this run's total steps (Note [extended runs])."""
        # Note [extended runs]
        # LambdaLR.load_state_dict restores the schedule's total_steps from the
        # checkpoint. A run resumed with more epochs recomputes the schedule over
        # the new total: the step count carries on, and every remaining step,
        # the first one included (its lr was set by the old curve), takes the new
        # curve's lr at that step. With the same epochs this changes nothing.
        total = self.config.epochs * self.per_epoch
        step = self.scheduler.last_epoch
        for group, base, multiplier in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas
        ):
            assert isinstance(multiplier, ScheduleMultiplier), "build_scheduler's multipliers"
            multiplier.total_steps = total
            group["lr"] = base * multiplier(step)

    def epoch(self, epoch: int, bar, on_step_end) -> dict:
        """Train epoch ``epoch`` (0-based) from the current position, evaluate, save; returns its history entry."""
        began = time.perf_counter()
        start_lr = self.scheduler.base_lrs[0] * self.scheduler.lr_lambdas[0](epoch * self.per_epoch)  # as LambdaLR
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": start_lr}  # also when resumed inside the epoch
        record |= self.train_epoch(epoch, bar, on_step_end)
        test = self.evaluate()
        record |= {"test_loss": test["loss"], "test_top1": test["top1"], "test_top5": test["top5"]}
        if "train_counts" in self.info:
            record |= self.shot_accuracies()
        record["seconds"] = time.perf_counter() - began
        self.history.append(record)
        bar.set_postfix(epoch=epoch + 1, test_top1=f"{test['top1']:.2f}")
        if self.folder is not None:
            self.checkpoint = self.save(epoch + 1)
        return record

    def train_epoch(self, epoch: int, bar, on_step_end) -> dict:
        """The rest of epoch ``epoch``'s steps; the epoch's mean loss and top-1 over all processes."""
        config, ctx = self.config, self.ctx
        self.network.train()
        batches = epoch_batches(len(self.splits.train), config.batch_size, config.seed, epoch, ctx.world_size)
        batches = batches[self.position :]
        local = [shard(b, ctx.rank, ctx.world_size) for b in batches]
        source = batch_source(self.splits.train, local, self.device, epoch=epoch, workers=config.workers)
        for (x, y), whole in zip(source, batches):
            loss, logits = self.train_step(x, y, loss_weight(len(y), len(whole), ctx.world_size))
            self.sums[0] += loss.double() * len(y)
            self.sums[1] += topk_hits(logits, y, (1,))[0]
            self.sums[2] += len(y)
            self.step, self.position = self.step + 1, self.position + 1
            bar.update(1)
            if not bar.disable and self.position % 25 == 1:
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss):.3f}", refresh=False)
            every = config.checkpoint_every
            if every and self.folder is not None and self.step % every == 0 and self.position < self.per_epoch:
                self.checkpoint = self.save(epoch)
            if on_step_end is not None:
                on_step_end(
                    {
                        "epoch": epoch + 1,
                        "step": self.step,
                        "loss": float(loss),
                        "batch_size": len(y),
                        "rank": ctx.rank,
                        "world_size": ctx.world_size,
                        "model": self.model,
                    }
                )
        totals = all_reduce_sum(self.sums.clone(), ctx.world_size).tolist()
        self.position, self.sums = 0, torch.zeros_like(self.sums)
        train_loss = totals[0] / totals[2]
        if not math.isfinite(train_loss):
            raise NonFiniteError(f"training diverged: the loss is {train_loss} in epoch {epoch + 1}; lower --lr")
        return {"train_loss": train_loss, "train_top1": 100.0 * totals[1] / totals[2]}

    def train_step(self, x: torch.Tensor, y: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on this process's share; returns its mean loss and logits (detached)."""
        with precision.autocast(self.device, self.config.amp):
            logits = self.network(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        precision.step(loss if weight == 1.0 else loss * weight, self.optimizer, self.scaler)
        with warnings.catch_warnings():
            # A step the gradient scaler skipped (infinite gradients) still advances the schedule, so
            # that the lr stays a function of the step count; torch warns about exactly that.
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
            self.scheduler.step()
        return loss.detach(), logits.detach()

    def evaluate(self) -> dict[str, float]:
        """Test loss and accuracy, each process scoring its share (rank 0's BatchNorm statistics)."""
        ctx, test = self.ctx, self.splits.test
        broadcast_buffers(self.model, ctx.world_size)
        index = shard(torch.arange(len(test)), ctx.rank, ctx.world_size)
        sums = evaluation_sums(
            self.model,
            test,
            index,
            batch_size=self.config.eval_batch_size,
            device=self.device,
            amp=self.config.amp,
            workers=self.config.workers,
        )
        loss, top1, top5, n = all_reduce_sum(sums, ctx.world_size).tolist()
        return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n}

    def shot_accuracies(self) -> dict[str, float | None]:
        """Test top-1 of the many / medium / few-shot classes of a long-tailed run (``test_*_top1``)."""
        ctx, test = self.ctx, self.splits.test
        index = shard(torch.arange(len(test)), ctx.rank, ctx.world_size)
        sums = class_sums(
            self.model,
            test,
            index,
            self.splits.num_classes,
            batch_size=self.config.eval_batch_size,
            device=self.device,
            amp=self.config.amp,
            workers=self.config.workers,
        )
        hits, totals = all_reduce_sum(sums, ctx.world_size).cpu()
        groups = group_accuracies(hits, totals, self.info["train_counts"])
        return {f"test_{group}": value for group, value in groups.items() if group != "top1"}

    def save(self, epochs_done: int) -> Path | None:
        """Write ``checkpoint.pt`` (and at epoch ends ``metrics.json``) atomically, from rank 0."""
        world = self.ctx.world_size
        rng = gather_objects(rng_state(), world)
        sums = all_gather_rows(self.sums, world).cpu()
        if not self.ctx.is_main:
            return None
        assert self.folder is not None, "only runs with an output folder save"
        config = self.config.to_dict()
        state = {
            "format": FORMAT,
            "config": config,
            "data": self.info,
            "epoch": epochs_done,
            "step": self.step,
            "epoch_step": self.position,
            "epoch_sums": sums,
            "steps_per_epoch": self.per_epoch,
            "world_size": world,
            "model": plain_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng[0],
            "history": self.history,
        }
        if world > 1:
            state["rng_ranks"] = rng
        path = save_checkpoint(self.folder / CHECKPOINT, state)
        if self.position == 0:
            write_json(
                self.folder / METRICS,
                {"config": config, "data": self.info, "history": self.history, "final": self.history[-1]},
            )
        return path


def train(
    config: TrainConfig,
    *,
    data: DataSplits | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    on_step_end: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train the model of ``config``; see the module docstring for what is written.

    Under ``torchrun`` (the environment variables ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``) every process calls this with the same arguments.

    Parameters
    ----------
    config : TrainConfig
        The whole configuration (validated on construction).
    data : DataSplits, optional
        Already prepared data (e.g. shared by many runs); default
        :func:`prepare_data` of ``config``.
    on_epoch_end : callable, optional
        Called on every process with each epoch's history entry (the same on
        all of them) after its checkpoint is saved (progress reports, early
        stopping by raising).
    on_step_end : callable, optional
        Called on every process after each optimizer step (and its
        mid-epoch checkpoint) with ``epoch`` (1-based), ``step`` (steps done),
        ``loss`` (this process's batch mean), ``batch_size`` (this process's),
        ``rank``, ``world_size`` and ``model`` (not wrapped).

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
    payload = load_checkpoint(config.resume) if config.resume else None  # a file or a run folder
    splits = data if data is not None else prepare_data(config)
    if len(splits.train) < 2:
        raise DataError(f"training needs at least 2 samples; {splits.name} has {len(splits.train)}")
    _check_sizes(config, len(splits.train), environment()[1])
    with process_group(config.device) as ctx:
        run = _Run(config, splits, folder, ctx)
        if payload is not None:
            _check_resume(payload, config, run.info, run.per_epoch)
            run.restore(payload)
        run.network = ctx.wrap(run.model)
        desc = config.head + (f" k={config.subspace_dim}" if config.head == "gcr" else "")
        with tqdm(
            total=config.epochs * run.per_epoch,
            initial=run.step,
            desc=desc,
            file=sys.stderr,
            leave=False,
            disable=not (config.progress and ctx.is_main),
            dynamic_ncols=True,
        ) as bar:
            for epoch in range(len(run.history), config.epochs):
                record = run.epoch(epoch, bar, on_step_end)
                if on_epoch_end is not None:
                    on_epoch_end(record)
    return TrainResult(
        run.model.eval(), config, run.history, run.info, folder, run.checkpoint, ctx.rank, ctx.world_size
    )
