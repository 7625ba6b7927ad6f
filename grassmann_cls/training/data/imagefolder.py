r"""Large image folders in the ImageNet layout, read from disk batch by batch.

``--dataset imagefolder:ROOT`` trains on ``ROOT/train/<class>/<image>`` and
evaluates on ``ROOT/val/<class>/<image>`` (or ``ROOT/test/...``), the layout
of ImageNet-1K once its validation images are sorted into class folders.
Classes are the sub-folder names in sorted order (for ImageNet: the WordNet
ids ``n01440764 ..``, labels 0 .. 999). Nothing is held in memory but the
file list; images are decoded as RGB with Pillow and transformed on access
(in ``workers`` data-loading processes during training).

The transforms are those of the paper's ResNet recipe (torchvision, an
optional dependency: a :class:`~grassmann_cls.errors.DataError` says so when
it is missing), for a crop size ``s`` (``image_size``, default 224):

=========  ===================================================================
train      ``RandomResizedCrop(s)``, ``RandomHorizontalFlip()``, ImageNet mean / std
test       ``Resize(round(s / 0.875))`` (256 for 224), ``CenterCrop(s)``, mean / std
=========  ===================================================================

The random augmentation of a training sample depends only on the seed, the
epoch and the sample's index, so a run on several processes and a resumed run
see exactly the images of the uninterrupted one-process run.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from grassmann_cls.errors import DataError
from grassmann_cls.training.data.splits import DataSplits, DiskImages

__all__ = ["PREFIX", "IMAGENET_MEAN", "IMAGENET_STD", "FolderImages", "load_imagefolder", "imagenet_transforms"]

PREFIX = "imagefolder:"
"""Data-set names starting with this prefix name an image folder in the ImageNet layout."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
_TEST_FOLDERS = ("val", "test")


class FolderImages(DiskImages):
    """Images listed by path, decoded and transformed when accessed.

    Parameters
    ----------
    files : sequence of str
        Image paths, one per sample.
    labels : sequence of int
        Labels ``0 .. C-1``, one per sample.
    transform : callable
        ``PIL.Image -> torch.Tensor`` of shape ``image_shape``.
    image_shape : (int, int, int)
        ``(C, H, W)`` of a transformed image.
    seed : int, optional
        Seed of random transforms: then ``dataset[(epoch, i)]`` is sample ``i`` as augmented in ``epoch``,
        and ``dataset[i]`` means ``dataset[(0, i)]``. ``None``: the transform
        is deterministic and the RNG is left alone.
    """

    def __init__(
        self, files: Sequence[str], labels: Sequence[int], transform: Callable, image_shape, seed: int | None = None
    ):
        if len(files) != len(labels):
            raise DataError(f"got {len(files)} files but {len(labels)} labels")
        self.files, self.labels = list(files), [int(y) for y in labels]
        self.transform, self.image_shape, self.seed = transform, tuple(int(s) for s in image_shape), seed

    @property
    def seeded_by_epoch(self) -> bool:
        """Whether samples are asked for by ``(epoch, index)`` (random transforms)."""
        return self.seed is not None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = _open_rgb(self.files[index])
        if self.seed is None:
            return self.transform(image), self.labels[index]
        with torch.random.fork_rng(devices=[]):  # the CPU generator only: CUDA's stays untouched
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(image), self.labels[index]


# Note [augmentation seeded per sample]
# The random crop and flip of training sample i in epoch e use the torch RNG
# seeded with (seed, e, i) alone (the global RNG is saved and restored
# around it). A sample's augmentation therefore does not depend on which
# process or data-loading worker reads it, nor on where a run was resumed:
# a W-process run and a resumed run see exactly the images of the
# uninterrupted 1-process run. The training loader asks for samples by the
# key (epoch, index).
def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index``'s augmentation in ``epoch``: a function of the three numbers only."""
    return ((seed * 1_000_003 + epoch) * 2_147_483_659 + index) % (2**63 - 1)


def _open_rgb(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise DataError(f"cannot read image {path} ({reason}); remove or replace it") from None


def imagenet_transforms(image_size: int = 224) -> tuple[Callable, Callable]:
    """``(train, test)`` torchvision transforms of the module table for crop size ``image_size``.

    Raises
    ------
    DataError
        If torchvision is not installed.
    """
    if importlib.util.find_spec("torchvision") is None:
        raise DataError(
            "imagefolder: data sets need torchvision for decoding and augmenting images; "
            "`pip install torchvision`, or use an .npz file or a small image folder"
        )
    T = importlib.import_module("torchvision.transforms")
    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *normalize])
    test = T.Compose([T.Resize(round(image_size / 0.875)), T.CenterCrop(image_size), *normalize])
    return train, test


def _list_images(folder: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, name in enumerate(classes):
        with os.scandir(folder / name) as entries:
            found = sorted(e.path for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower() in _SUFFIXES)
        files += found
        labels += [label] * len(found)
    return files, labels


def _folders(root: Path) -> tuple[Path, Path, list[str]]:
    train = root / "train"
    test = next((root / name for name in _TEST_FOLDERS if (root / name).is_dir()), None)
    if not train.is_dir() or test is None:
        raise DataError(
            f"{root} is not an image folder in the ImageNet layout: expected {root}/train/<class>/ "
            f"and {root}/val/<class>/ (or {root}/test/<class>/)"
        )
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    missing = [c for c in classes if not (test / c).is_dir()]
    if len(classes) < 2 or missing:
        detail = f"found {len(classes)} class folders" if len(classes) < 2 else f"{test} lacks {missing[:4]}"
        raise DataError(f"{train} must hold one folder per class (at least 2), each also in {test}; {detail}")
    return train, test, classes


def _select(labels: np.ndarray, classes: Sequence[int] | None, size: int | None, seed: int) -> np.ndarray:
    """Indices of the samples of ``classes`` (all if ``None``), a stratified subset of ``size`` if given."""
    index = np.arange(len(labels)) if classes is None else np.flatnonzero(np.isin(labels, classes))
    if size is None or size >= len(index):
        return index
    from sklearn.model_selection import train_test_split

    try:
        chosen, _ = train_test_split(index, train_size=size, random_state=seed, stratify=labels[index])
    except ValueError as err:
        raise DataError(f"cannot draw a stratified subset of {size} samples ({' '.join(str(err).split())})") from None
    return np.sort(chosen)


def load_imagefolder(
    root: str | os.PathLike,
    *,
    image_size: int | None = None,
    classes: Sequence[int] | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    transforms: tuple[Callable, Callable] | None = None,
) -> DataSplits:
    """An image folder in the ImageNet layout as :class:`FolderImages` splits (see the module docstring).

    Parameters
    ----------
    root : path-like
        Holds ``train/<class>/`` and ``val/<class>/`` (or ``test/<class>/``).
    image_size : int, optional
        Crop size (default 224).
    classes : sequence of int, optional
        Keep these classes, relabelled ``0 ..`` in this order.
    train_size, test_size : int, optional
        Stratified random subsets, seeded by ``seed``.
    seed : int
        Seed of the subsets and of the training augmentation.
    transforms : (callable, callable), optional
        ``(train, test)`` maps from a PIL image to a tensor of shape
        ``(3, image_size, image_size)``; default :func:`imagenet_transforms`.

    Returns
    -------
    DataSplits
        ``train`` and ``test`` are :class:`FolderImages`.

    Raises
    ------
    DataError
        Wrong layout, bad selection, or torchvision missing (for the default transforms).
    """
    root = Path(root)
    size = 224 if image_size is None else int(image_size)
    train_dir, test_dir, names = _folders(root)
    train_tf, test_tf = transforms if transforms is not None else imagenet_transforms(size)
    if classes is not None:
        classes = [int(c) for c in classes]
        if len(classes) < 2 or len(set(classes)) != len(classes) or not all(0 <= c < len(names) for c in classes):
            raise DataError(f"classes must be at least 2 distinct labels in 0..{len(names) - 1}; got {classes}")
    relabel = np.arange(len(names)) if classes is None else np.full(len(names), -1)
    if classes is not None:
        relabel[classes] = np.arange(len(classes))
    parts = []
    splits = ((train_dir, train_tf, train_size, seed), (test_dir, test_tf, test_size, None))
    for folder, transform, subset, augmentation_seed in splits:
        files, label_list = _list_images(folder, names)
        labels = np.asarray(label_list, dtype=np.int64)
        keep = _select(labels, classes, subset, seed)
        if len(keep) == 0:
            raise DataError(f"{folder} holds no images ({', '.join(sorted(_SUFFIXES))}) of the chosen classes")
        images = FolderImages(
            [files[i] for i in keep], relabel[labels[keep]], transform, (3, size, size), augmentation_seed
        )
        parts.append(images)
    kept = names if classes is None else [names[c] for c in classes]
    name = root.name + ("" if classes is None else f"[{','.join(map(str, classes))}]")
    return DataSplits(name, parts[0], parts[1], len(kept), tuple(kept), str(root))
