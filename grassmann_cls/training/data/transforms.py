"""Transformations of :class:`DataSplits`: subsets, class splits, resizing, channels."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from grassmann_cls.errors import DataError
from grassmann_cls.training.data.splits import DataSplits, ImageData, finish

__all__ = ["subsample", "split_classes", "resize_images", "repeat_channels"]


def _in_memory(data: ImageData, name: str, action: str) -> TensorDataset:
    """``data`` as a ``TensorDataset``; a :class:`DataError` naming ``action`` for images read from disk."""
    if not isinstance(data, TensorDataset):
        raise DataError(f"{action} needs in-memory data; {name} is read from disk")
    return data


def _take(data: TensorDataset, index: torch.Tensor, relabel: torch.Tensor | None = None) -> TensorDataset:
    x, y = data.tensors
    y = y[index]
    return TensorDataset(x[index], relabel[y] if relabel is not None else y)


def _stratified_index(y: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` indices drawn without replacement, classes in proportion."""
    perm = torch.randperm(len(y), generator=generator)
    counts = torch.bincount(y)
    quota = torch.floor(counts.double() * size / len(y)).long()
    quota[torch.argsort(counts, descending=True)[: size - int(quota.sum())]] += 1
    rank = torch.empty_like(perm)
    order = perm[torch.argsort(y[perm], stable=True)]
    starts = torch.cumsum(counts, 0) - counts
    rank[order] = torch.arange(len(y)) - starts.repeat_interleave(counts)
    keep = rank < quota[y]
    return torch.sort(torch.nonzero(keep).squeeze(1)).values


def subsample(splits: DataSplits, *, train: int | None = None, test: int | None = None, seed: int = 0) -> DataSplits:
    """A stratified random subset of at most ``train`` / ``test`` samples.

    The subset is a deterministic function of ``seed``; the standardisation
    of the full data set is kept.
    """
    parts: dict[str, ImageData] = {}
    for split, data, size in (("train", splits.train, train), ("test", splits.test, test)):
        if size is not None and size < 1:
            raise DataError(f"{split} subset size must be >= 1; got {size}")
        if size is None or size >= len(data):
            parts[split] = data
            continue
        in_memory = _in_memory(data, splits.name, "a subset")
        index = _stratified_index(in_memory.tensors[1], size, torch.Generator().manual_seed(seed))
        parts[split] = _take(in_memory, index)
    return dataclasses.replace(splits, train=parts["train"], test=parts["test"])


def split_classes(splits: DataSplits, classes: Sequence[int]) -> DataSplits:
    """Keep only ``classes`` and relabel them ``0 .. len(classes)-1`` in that order.

    Example: ``split_classes(digits(), range(5, 10))`` is digits 5-9 with
    labels 0-4, the transfer target of a model trained on digits 0-4.
    """
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < splits.num_classes]
    if len(classes) < 2 or bad or len(set(classes)) != len(classes):
        raise DataError(f"classes must be at least 2 distinct labels in 0..{splits.num_classes - 1}; got {classes}")
    relabel = torch.full((splits.num_classes,), -1, dtype=torch.int64)
    relabel[classes] = torch.arange(len(classes))
    train, test = (_in_memory(data, splits.name, "a class split") for data in (splits.train, splits.test))
    train, test = (_take(d, torch.nonzero(relabel[d.tensors[1]] >= 0).squeeze(1), relabel) for d in (train, test))
    name = f"{splits.name}[{','.join(map(str, classes))}]"
    names = tuple(splits.class_names[c] for c in classes)
    return dataclasses.replace(splits, name=name, num_classes=len(classes), class_names=names, train=train, test=test)


def resize_images(splits: DataSplits, size: int | Sequence[int] = 28) -> DataSplits:
    """Resize every image bilinearly (e.g. digits 8 x 8 -> 28 x 28) and re-standardise.

    Parameters
    ----------
    splits : DataSplits
        Images of shape ``(N, C, H, W)``.
    size : int or (int, int)
        Output ``H, W``.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or min(hw) < 1:
        raise DataError(f"size must be a positive int or (H, W); got {hw}")
    train, test = (_in_memory(data, splits.name, "resizing") for data in (splits.train, splits.test))
    train_x, test_x = (
        F.interpolate(d.tensors[0], size=hw, mode="bilinear", align_corners=False) for d in (train, test)
    )
    h, w = hw
    return finish(
        f"{splits.name}@{h}x{w}",
        train_x,
        train.tensors[1],
        test_x,
        test.tensors[1],
        splits.class_names,
        splits.source,
    )


def repeat_channels(splits: DataSplits, channels: int = 3) -> DataSplits:
    """Repeat the single channel of grey images ``channels`` times (e.g. digits for an RGB model).

    Parameters
    ----------
    splits : DataSplits
        Images of shape ``(N, 1, H, W)``.
    channels : int
        Channels of the result.

    Raises
    ------
    DataError
        If the images do not have exactly one channel or ``channels < 1``.
    """
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise DataError(f"channels must be a positive int; got {channels!r}")
    if splits.image_shape[0] != 1:
        raise DataError(f"only one-channel images can be repeated; {splits.name} has {splits.image_shape[0]} channels")
    train, test = (_in_memory(data, splits.name, "repeating channels") for data in (splits.train, splits.test))
    train_x, test_x = (d.tensors[0].expand(-1, channels, -1, -1).contiguous() for d in (train, test))
    return finish(
        f"{splits.name}x{channels}ch",
        train_x,
        train.tensors[1],
        test_x,
        test.tensors[1],
        splits.class_names,
        splits.source,
    )
