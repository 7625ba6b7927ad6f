r"""Batches for training and evaluation, from tensors in memory or images read from disk.

The batches of an epoch depend only on the seed and the epoch number, so a
run resumed at any step sees exactly the batches of the uninterrupted run,
and so does a run on any number of processes: each process takes its share
of every global batch (:func:`grassmann_cls.training.distributed.shard`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ["steps_per_epoch", "epoch_batches", "batch_source"]


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Batches per epoch; a last partial batch is dropped if it cannot give every process 2 samples.

    BatchNorm needs two samples per process; with one process this drops a
    last batch of a single sample. A data set smaller than one batch is one batch.

    Examples
    --------
    >>> steps_per_epoch(130, 64), steps_per_epoch(130, 64, world_size=2)
    (3, 2)
    """
    full, rest = divmod(num_samples, batch_size)
    return full + (1 if rest >= 2 * world_size or (rest > 0 and full == 0) else 0)


# Note [reproducible batches]
# The order of epoch e is randperm(N) from a generator seeded with
# (seed, e) alone, not from a running RNG, so a run resumed at any step sees
# exactly the batches of the uninterrupted run, and so does a run on any
# number of processes: each takes its share of every global batch
# (Note [one global batch, split across processes] in
# grassmann_cls/training/distributed.py).
def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, world_size: int = 1) -> list[torch.Tensor]:
    """Global index batches of one epoch, a function of ``(seed, epoch)`` only.

    ``world_size`` only decides whether a small last batch is dropped
    (:func:`steps_per_epoch`); the batches themselves never depend on it.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    batches = list(torch.randperm(num_samples, generator=generator).split(batch_size))
    return batches[: steps_per_epoch(num_samples, batch_size, world_size)]


def batch_source(
    data: Dataset,
    batches: Sequence[torch.Tensor],
    device: torch.device,
    *,
    epoch: int | None = None,
    workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` on ``device`` for each index batch, in order.

    Parameters
    ----------
    data : Dataset
        A ``TensorDataset`` (indexed directly) or any map-style data set of
        ``(image, label)`` pairs (read by a ``DataLoader`` with ``workers``
        processes); one with ``seeded_by_epoch`` true is asked for
        ``(epoch, index)`` keys, so that its random augmentation is the same
        in every resumed or multi-process run.
    batches : sequence of torch.Tensor
        Index batches, each of shape ``(B,)``.
    device : torch.device
        Where the batches go.
    epoch : int, optional
        The training epoch (``None`` for evaluation).
    workers : int
        Data-loading processes for data sets that are not in memory.
    """
    if isinstance(data, TensorDataset):
        images, labels = data.tensors
        for index in batches:
            yield images[index].to(device), labels[index].to(device)
        return
    keyed = epoch is not None and getattr(data, "seeded_by_epoch", False)
    sampler = [[(epoch, i) for i in b.tolist()] if keyed else b.tolist() for b in batches]
    loader = DataLoader(data, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
