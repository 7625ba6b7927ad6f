"""The :class:`DataSplits` container, the data-set registry and standardisation."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from manifolds import Registry

__all__ = ["DATASETS", "DataSplits", "DiskImages", "ImageData", "finish", "stratified_split"]


class DiskImages(Dataset):
    """Base of the images that :class:`DataSplits` reads from disk on access.

    A map-style data set of ``(image, label)`` pairs, each image a tensor of
    shape ``image_shape`` ``(C, H, W)``;
    :class:`~grassmann_cls.training.data.imagefolder.FolderImages` is one.
    """

    image_shape: tuple[int, ...]

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__}.__len__")


ImageData = TensorDataset | DiskImages
"""A split of :class:`DataSplits`: images in memory, or read from disk."""


@dataclasses.dataclass(frozen=True)
class DataSplits:
    """A data set split into standardised train and test tensors.

    Attributes
    ----------
    name : str
        Short name, e.g. ``"fashion_mnist"`` or ``"digits[5-9]"``.
    train, test : TensorDataset or DiskImages
        ``(x, y)`` with ``x`` of shape ``(N, C, H, W)`` (float32) and ``y`` of
        shape ``(N,)`` (int64); for image folders read from disk,
        :class:`~grassmann_cls.training.data.imagefolder.FolderImages`.
    num_classes : int
        Number of classes ``C``; labels lie in ``0 .. C-1``.
    class_names : tuple of str
        One name per class.
    source : str
        Where the data came from (a path, or ``"scikit-learn (bundled)"``).
    """

    name: str
    train: ImageData
    test: ImageData
    num_classes: int
    class_names: tuple[str, ...]
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        data = self.train
        c, h, w = data.tensors[0].shape[1:] if isinstance(data, TensorDataset) else data.image_shape
        return c, h, w

    def __repr__(self) -> str:
        return (
            f"DataSplits(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"num_classes={self.num_classes}, image_shape={self.image_shape}, source={self.source!r})"
        )


DATASETS: Registry = Registry("data set")


def finish(name, train_x, train_y, test_x, test_y, class_names, source) -> DataSplits:
    """Standardise per channel with training statistics and wrap as tensors.

    Parameters
    ----------
    name : str
        Name of the data set.
    train_x, test_x : array-like
        Images of shape ``(N, C, H, W)``, any real dtype.
    train_y, test_y : array-like
        Integer labels of shape ``(N,)``.
    class_names : sequence of str
        One name per class; its length is ``num_classes``.
    source : str or path-like
        Where the data came from.
    """
    train_x = torch.as_tensor(train_x, dtype=torch.float32)
    test_x = torch.as_tensor(test_x, dtype=torch.float32)
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    train = TensorDataset((train_x - mean) / std, torch.as_tensor(train_y, dtype=torch.int64))
    test = TensorDataset((test_x - mean) / std, torch.as_tensor(test_y, dtype=torch.int64))
    return DataSplits(name, train, test, len(class_names), tuple(class_names), str(source))


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` with ``test_fraction`` of every class in test.

    Parameters
    ----------
    y : numpy.ndarray
        Integer labels of shape ``(N,)``.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    return train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
