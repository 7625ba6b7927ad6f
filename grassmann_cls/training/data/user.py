"""User data: an ``.npz`` file of arrays or a folder of images per class."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grassmann_cls.errors import DataError
from grassmann_cls.training.data.splits import DataSplits, finish, stratified_split

__all__ = ["load_npz", "load_image_folder"]

_TEST_FRACTION = 0.2
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _reason(err: Exception) -> str:
    """An exception as one short line."""
    return " ".join(str(err).split())[:200] or type(err).__name__


def _as_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(
            f"{path}: {key} must be real images of shape (N, H, W) or (N, C, H, W); "
            f"got shape {x.shape}, dtype {x.dtype}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: {key} holds NaN or Inf values; clean the file")
    return x


def _as_labels(y: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise DataError(
            f"{path}: {key} must be {n} non-negative integer labels of shape ({n},); "
            f"got shape {y.shape}, dtype {y.dtype}"
        )
    return y.astype(np.int64)


def _class_names(names, num_classes: int, path: Path) -> tuple[str, ...]:
    if names is None:
        return tuple(str(c) for c in range(num_classes))
    names = tuple(str(s) for s in np.asarray(names).reshape(-1))
    if len(names) != num_classes:
        raise DataError(f"{path}: class_names has {len(names)} entries but the labels need {num_classes}")
    return names


def load_npz(path: str | os.PathLike) -> DataSplits:
    """Load user data from an ``.npz`` file (keys in the module docstring)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as .npz ({_reason(err)}); save it with numpy.savez") from None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        parts = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        keys = ("x_train", "y_train", "x_test", "y_test")
    elif {"x", "y"} <= arrays.keys():
        x = _as_images(arrays["x"], "x", path)
        y = _as_labels(arrays["y"], len(x), "y", path)
        train, test = _split_or_fail(y, path)
        parts, keys = [x[train], y[train], x[test], y[test]], ("x", "y", "x", "y")
    else:
        raise DataError(f"{path} has keys {sorted(arrays)}; expected x_train, y_train, x_test, y_test (or x, y)")
    train_x = _as_images(parts[0], keys[0], path)
    test_x = _as_images(parts[2], keys[2], path)
    train_y = _as_labels(parts[1], len(train_x), keys[1], path)
    test_y = _as_labels(parts[3], len(test_x), keys[3], path)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{path}: train images {train_x.shape[1:]} and test images {test_x.shape[1:]} differ in shape")
    num_classes = int(max(train_y.max(initial=0), test_y.max(initial=0))) + 1
    names = _class_names(arrays.get("class_names"), num_classes, path)
    _check_sizes(len(train_y), len(test_y), num_classes, path)
    return finish(path.stem, train_x, train_y, test_x, test_y, names, path)


def _split_or_fail(y: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stratified 80 / 20 split; both parts must hold every class."""
    counts = np.bincount(y)
    classes = int((counts > 0).sum())
    n_test = math.ceil(_TEST_FRACTION * len(y))
    if len(y) < 2 or counts[counts > 0].min() < 2 or min(n_test, len(y) - n_test) < classes:
        raise DataError(
            f"{path}: to split off a {_TEST_FRACTION:.0%} test set every class needs at least 2 samples "
            f"and each part at least one per class; got class counts {counts.tolist()}"
        )
    return stratified_split(y, _TEST_FRACTION, seed=0)


def _check_sizes(n_train: int, n_test: int, num_classes: int, path: Path) -> None:
    if n_train == 0 or n_test == 0 or num_classes < 2:
        raise DataError(
            f"{path}: need non-empty train and test sets and at least 2 classes; "
            f"got {n_train} train, {n_test} test, {num_classes} classes"
        )


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"cannot read image {path} ({_reason(err)}); remove or replace it") from None


def _read_class_folders(root: Path, classes: Sequence[str]) -> tuple[list[np.ndarray], list[int]]:
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        images += [_read_image(p) for p in files]
        labels += [label] * len(files)
    return images, labels


def _stack(images: list[np.ndarray], root: Path) -> np.ndarray:
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise DataError(f"{root}: images have different sizes {shapes[:4]}; resize them to one size")
    return np.stack(images)[:, None]


def load_image_folder(root: str | os.PathLike) -> DataSplits:
    """Load user data from a folder of images per class (layout in the module docstring)."""
    root = Path(root)
    split = (root / "train").is_dir() and (root / "test").is_dir()
    base = root / "train" if split else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(f"{base} must hold one sub-folder of images per class (at least 2); found {len(classes)}")
    images, labels = _read_class_folders(base, classes)
    if not images:
        raise DataError(f"{base}: no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in the class folders")
    x, y = _stack(images, root), np.asarray(labels, dtype=np.int64)
    if split:
        missing = [c for c in classes if not (root / "test" / c).is_dir()]
        if missing:
            raise DataError(f"{root / 'test'} lacks class folders {missing[:4]} that {base} has")
        test_images, test_labels = _read_class_folders(root / "test", classes)
        x_test, y_test = _stack(images + test_images, root)[len(images) :], np.asarray(test_labels, np.int64)
        x_train, y_train = x, y
    else:
        train, test = _split_or_fail(y, root)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    _check_sizes(len(y_train), len(y_test), len(classes), root)
    return finish(root.name, x_train, y_train, x_test, y_test, classes, root)
