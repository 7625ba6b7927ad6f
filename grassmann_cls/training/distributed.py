r"""Data-parallel training with ``torch.distributed``: one process per device.

``torchrun --nproc-per-node N -m grassmann_cls train ...`` starts ``N``
processes and tells each its place through the environment variables
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. :func:`process_group` reads them,
joins the process group (``nccl`` on CUDA, ``gloo`` on the CPU) and gives
each process its device (``cuda:LOCAL_RANK``); without them it is a
one-process run and nothing is initialised.

Every process draws the same global batches and takes its contiguous share
(:func:`shard`), and each process's loss is weighted by :func:`loss_weight`,
so that the gradients ``DistributedDataParallel`` averages are those of the
mean loss over the whole global batch: a run on ``W`` processes follows the
one-process run up to float rounding (and BatchNorm, whose statistics are per
process unless ``sync_batchnorm``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from grassmann_cls.errors import ConfigError, ShapeError
from manifolds import checks as _checks

__all__ = [
    "Distributed",
    "environment",
    "resolve_device",
    "process_group",
    "shard",
    "loss_weight",
    "all_reduce_sum",
    "all_gather_rows",
    "gather_objects",
    "broadcast_buffers",
]


@dataclasses.dataclass(frozen=True)
class Distributed:
    """Where this process stands in a (possibly one-process) run.

    Attributes
    ----------
    rank, world_size, local_rank : int
        This process's index, the number of processes, its index on its node.
    device : torch.device
        The device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files, logs and shows progress (rank 0)."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` when there are several processes."""
        if self.world_size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _integer(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer; got {text!r}") from None


def environment() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` of this process.

    From an initialised process group, else from torchrun's variables, else ``(0, 1, 0)``.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), _integer("LOCAL_RANK", 0)
    rank, world, local = _integer("RANK", 0), _integer("WORLD_SIZE", 1), _integer("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ConfigError(f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} do not describe a process of a run")
    return rank, world, local


def resolve_device(name: str, *, world_size: int = 1, local_rank: int = 0) -> torch.device:
    """The device ``name`` (``cpu``, ``cuda``, ``cuda:i``, ``mps``, ``auto``) means for this process.

    With several processes ``cuda`` and ``auto`` mean ``cuda:LOCAL_RANK``; a
    fixed ``cuda:i`` or ``mps`` is refused there, since processes cannot share one device.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available; use --device cpu")
    if world_size == 1:
        return torch.device(name)
    if name == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK={local_rank} but this node has {torch.cuda.device_count()} CUDA devices; "
                "start at most that many processes per node"
            )
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise ConfigError(
            f"device {name!r} cannot be shared by {world_size} processes; pass --device cuda "
            "(each process takes cuda:LOCAL_RANK) or --device cpu"
        )
    return torch.device("cpu")


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Distributed]:
    """Join the run's process group for the duration of the block (see the module docstring).

    A process group that is already initialised (by the caller's own script)
    is used as it is and left open; one initialised here is destroyed on exit,
    after a barrier when the block succeeded.

    Parameters
    ----------
    device : str
        As for :func:`resolve_device`.

    Yields
    ------
    Distributed
    """
    rank, world, local = environment()
    target = resolve_device(device, world_size=world, local_rank=local)
    if world == 1 or dist.is_initialized():
        yield Distributed(rank, world, local, target)
        return
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    try:
        yield Distributed(rank, world, local, target)
        dist.barrier()
    finally:
        dist.destroy_process_group()


# Note [one global batch, split across processes]
# Every process draws the same global batches (a function of seed and epoch)
# and takes its contiguous share, batch.tensor_split(world_size)[rank]:
# shares differ by at most one sample. DistributedDataParallel averages the
# gradients of the processes, so the loss of process r is its batch mean times
# n_r * world_size / n; the averaged gradient is then the gradient of the
# mean over the whole global batch, for equal and unequal shares alike, and a
# W-process run follows the 1-process run up to float rounding (and BatchNorm,
# whose statistics are per process unless sync_batchnorm).
def shard(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This process's contiguous share of a global batch of indices; shares differ by at most one sample.

    Raises
    ------
    ManifoldTypeError
        If ``batch`` is not a tensor or ``rank``/``world_size`` are not ints.
    ShapeError
        If ``batch`` is 0-dimensional.
    ConfigError
        Unless ``world_size >= 1`` and ``0 <= rank < world_size``.

    Examples
    --------
    >>> [shard(torch.arange(5), r, 2).tolist() for r in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    _checks.tensor("batch", batch, dtypes=None)
    rank, world_size = _checks.integer("rank", rank), _checks.integer("world_size", world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(
            f"shard needs world_size >= 1 and 0 <= rank < world_size; got rank={rank}, world_size={world_size}"
        )
    if batch.dim() == 0:
        raise ShapeError(f"batch must have at least one dim to split; got shape {tuple(batch.shape)}")
    return batch.tensor_split(world_size)[rank]


def loss_weight(local_size: int, global_size: int, world_size: int) -> float:
    """Factor on a process's mean loss so that averaged gradients are those of the global mean."""
    return local_size * world_size / global_size


def all_reduce_sum(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place (nothing to do for one process)."""
    if world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_rows(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """Every process's ``tensor`` stacked, shape ``(world_size, *tensor.shape)``."""
    if world_size == 1:
        return tensor.unsqueeze(0).clone()
    rows = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(rows, tensor.contiguous())
    return torch.stack(rows)


def gather_objects(value: Any, world_size: int) -> list[Any]:
    """Every process's picklable ``value``, in rank order."""
    if world_size == 1:
        return [value]
    values: list[Any] = [None] * world_size
    dist.all_gather_object(values, value)
    return values


@torch.no_grad()
def broadcast_buffers(model: nn.Module, world_size: int) -> None:
    """Give every process rank 0's buffers (e.g. BatchNorm running statistics)."""
    if world_size == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)
