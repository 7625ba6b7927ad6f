r"""Data sets as plain tensors: Fashion-MNIST, scikit-learn's digits, user data.

Every loader returns a :class:`DataSplits`: a train and a test
:class:`~torch.utils.data.TensorDataset` of images ``x`` of shape
``(N, C, H, W)`` (float32, standardised with the *training* mean and standard
deviation of each channel) and labels ``y`` of shape ``(N,)`` (int64,
``0 <= y < num_classes``). Nothing is downloaded.

======================  ===================================================
name                    source
======================  ===================================================
``fashion_mnist``       the real IDX files, 60000 + 10000 images of 28 x 28
``digits``              scikit-learn's bundled digits, 1347 + 450 images of 8 x 8
``auto``                ``fashion_mnist`` when its files are found, else ``digits``
a path                  an ``.npz`` file or a folder of images per class
``imagefolder:ROOT``    ImageNet layout, read from disk (:mod:`~grassmann_cls.training.data.imagefolder`)
======================  ===================================================

Fashion-MNIST is looked up in, in order: the ``data_dir`` argument (the CLI's
``--data-dir``), the environment variable ``GRASSMANN_CLS_DATA``, and
``/usr/share/datasets/fashion-mnist`` (the Debian package
``dataset-fashion-mnist``). A folder matches when it holds the four files
``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each optionally ``.gz``),
directly or in a ``fashion-mnist`` sub-folder.

User data
---------
``.npz`` file
    Either ``x_train, y_train, x_test, y_test`` or ``x, y`` (then a stratified
    20 % test split is drawn with a fixed seed). Images have shape
    ``(N, H, W)`` (grayscale) or ``(N, C, H, W)``, any real dtype; labels are
    integers ``0 .. C-1`` of shape ``(N,)``. An optional ``class_names`` array
    of ``C`` strings names the classes.
Image folder
    ``root/<class>/<image>`` or ``root/train/<class>/<image>`` plus
    ``root/test/<class>/<image>``; classes are the sub-folder names in sorted
    order, images (``.png .jpg .jpeg .bmp .gif .tif .tiff .webp``) are read
    as grayscale with Pillow and must all have the same size.

A missing or malformed data set raises :class:`~grassmann_cls.errors.DataError`
with a one-line message that says how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from grassmann_cls.errors import DataError
from grassmann_cls.training.data.builtin import (
    DEBIAN_DIR,
    ENV_VAR,
    auto,
    digits,
    fashion_mnist,
    find_fashion_mnist,
    read_idx,
)
from grassmann_cls.training.data.imagefolder import PREFIX as IMAGEFOLDER_PREFIX
from grassmann_cls.training.data.imagefolder import load_imagefolder
from grassmann_cls.training.data.longtail import group_accuracies, long_tail, long_tail_counts, shot_groups
from grassmann_cls.training.data.splits import DATASETS, DataSplits, DiskImages, ImageData
from grassmann_cls.training.data.transforms import repeat_channels, resize_images, split_classes, subsample
from grassmann_cls.training.data.user import load_image_folder, load_npz

__all__ = [
    "DATASETS",
    "DataSplits",
    "DiskImages",
    "ImageData",
    "ENV_VAR",
    "DEBIAN_DIR",
    "load_dataset",
    "fashion_mnist",
    "digits",
    "auto",
    "load_npz",
    "load_image_folder",
    "load_imagefolder",
    "read_idx",
    "find_fashion_mnist",
    "subsample",
    "split_classes",
    "resize_images",
    "repeat_channels",
    "prepare",
    "long_tail",
    "long_tail_counts",
    "shot_groups",
    "group_accuracies",
]


def load_dataset(name: str | os.PathLike, *, data_dir: str | os.PathLike | None = None) -> DataSplits:
    """Load a data set by registered name (``-`` and ``_`` alike) or by path.

    Parameters
    ----------
    name : str or path-like
        One of :data:`DATASETS` ``.names()``, a path to an ``.npz`` file, or a
        path to an image folder.
    data_dir : path-like, optional
        Where to find Fashion-MNIST (for ``fashion_mnist`` and ``auto``).

    Raises
    ------
    DataError
        Unknown name, missing path, or malformed files.
    """
    key = str(name).replace("-", "_")
    if key in DATASETS:
        return DATASETS.resolve(key)(data_dir)
    path = Path(name)
    if path.is_dir():
        return load_image_folder(path)
    if path.is_file():
        return load_npz(path)
    raise DataError(
        f"data set {str(name)!r} not found: expected one of {', '.join(DATASETS.names())}, "
        "an existing .npz file or a folder of images per class"
    )


def prepare(
    dataset: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    classes: Sequence[int] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
    imbalance_ratio: float | None = None,
) -> DataSplits:
    """Load a data set and apply the usual selections, in this order.

    Parameters
    ----------
    dataset, data_dir
        As for :func:`load_dataset`.
    classes : sequence of int, optional
        Keep these classes (:func:`split_classes`).
    train_size, test_size : int, optional
        Stratified subsets (:func:`subsample`, seeded by ``seed``).
    image_size : int, optional
        Resize to ``image_size x image_size`` (:func:`resize_images`).
    seed : int
        Seed of the subsets and of the long tail.
    imbalance_ratio : float, optional
        Draw a long-tailed training split with this ratio, class 0 the head
        (:func:`~grassmann_cls.training.data.longtail.long_tail`), last.

    Notes
    -----
    An ``imagefolder:ROOT`` data set is read from disk by
    :func:`~grassmann_cls.training.data.imagefolder.load_imagefolder`, with
    ``image_size`` as its crop size.
    """
    if isinstance(dataset, str) and dataset.startswith(IMAGEFOLDER_PREFIX):
        if imbalance_ratio is not None:
            raise DataError("a long-tailed training set (imbalance_ratio) needs in-memory data, not imagefolder:")
        return load_imagefolder(
            dataset[len(IMAGEFOLDER_PREFIX) :],
            image_size=image_size,
            classes=classes,
            train_size=train_size,
            test_size=test_size,
            seed=seed,
        )
    splits = load_dataset(dataset, data_dir=data_dir)
    if classes is not None:
        splits = split_classes(splits, classes)
    if train_size is not None or test_size is not None:
        splits = subsample(splits, train=train_size, test=test_size, seed=seed)
    if image_size is not None and splits.image_shape[1:] != (image_size, image_size):
        splits = resize_images(splits, image_size)
    if imbalance_ratio is not None:
        splits = long_tail(splits, imbalance_ratio, seed=seed)
    return splits
