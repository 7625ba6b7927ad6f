"""The built-in data sets: Fashion-MNIST from its IDX files and scikit-learn's digits."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from grassmann_cls.errors import DataError
from grassmann_cls.training.data.splits import DATASETS, DataSplits, finish, stratified_split

__all__ = ["ENV_VAR", "DEBIAN_DIR", "read_idx", "find_fashion_mnist", "fashion_mnist", "digits", "auto"]

ENV_VAR = "GRASSMANN_CLS_DATA"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_FIX_FASHION = (
    f"install it with `sudo apt-get install dataset-fashion-mnist`, or pass --data-dir "
    f"(or set {ENV_VAR}) to a folder holding train-images-idx3-ubyte[.gz] and the other three IDX files"
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (optionally gzip-compressed).

    Parameters
    ----------
    path : path-like
        File in the IDX format of MNIST: two zero bytes, type code ``0x08``,
        the number of dims ``d``, ``d`` big-endian uint32 sizes, then the data.

    Returns
    -------
    numpy.ndarray
        uint8 array of the stored shape, e.g. ``(N, 28, 28)`` or ``(N,)``.

    Raises
    ------
    DataError
        If the file cannot be read, is not an unsigned-byte IDX file, or is
        truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise DataError(f"cannot read IDX file {path} ({reason}); re-install or re-copy it") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(
            f"{path} is not an IDX file of unsigned bytes (header {raw[:4].hex() or 'empty'}); re-install or re-copy it"
        )
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(f"{path} is truncated inside its header; re-install or re-copy it")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    expected = offset + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes but its header {dims} needs {expected}; re-install or re-copy it")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four Fashion-MNIST files in ``folder`` (or its ``fashion-mnist``), or None."""
    for root in (folder, folder / "fashion-mnist"):
        found = {}
        for key, stem in _IDX_FILES.items():
            candidates = [root / stem, root / f"{stem}.gz"]
            hit = next((c for c in candidates if c.is_file()), None)
            if hit is None:
                break
            found[key] = hit
        else:
            return found
    return None


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> dict[str, Path] | None:
    """Locate the Fashion-MNIST IDX files.

    Parameters
    ----------
    data_dir : path-like, optional
        Folder to use. When given, only this folder is searched.

    Returns
    -------
    dict or None
        Paths keyed ``train_x, train_y, test_x, test_y``, or ``None`` when the
        files are not found in ``data_dir``, ``$GRASSMANN_CLS_DATA`` or
        :data:`DEBIAN_DIR`.
    """
    if data_dir is not None:
        return _idx_files(Path(data_dir))
    folders = [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []
    for folder in [*folders, DEBIAN_DIR]:
        found = _idx_files(folder)
        if found is not None:
            return found
    return None


def _check_idx_pair(images: np.ndarray, labels: np.ndarray, split: str, folder: Path) -> None:
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"Fashion-MNIST {split} files in {folder} do not match: images {images.shape}, "
            f"labels {labels.shape}; re-install or re-copy them"
        )
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataError(
            f"Fashion-MNIST {split} labels in {folder} go up to {int(labels.max())}, expected 0..9; "
            "re-install or re-copy them"
        )


@DATASETS.register
def fashion_mnist(data_dir: str | os.PathLike | None = None) -> DataSplits:
    """Fashion-MNIST from its IDX files: 60000 train and 10000 test images, (1, 28, 28).

    Parameters
    ----------
    data_dir : path-like, optional
        Folder holding the IDX files (see :func:`find_fashion_mnist`).
    """
    files = find_fashion_mnist(data_dir)
    if files is None:
        where = data_dir if data_dir is not None else f"${ENV_VAR} or {DEBIAN_DIR}"
        raise DataError(f"Fashion-MNIST not found in {where}: {_FIX_FASHION}")
    arrays = {key: read_idx(path) for key, path in files.items()}
    folder = files["train_x"].parent
    for split in ("train", "test"):
        _check_idx_pair(arrays[f"{split}_x"], arrays[f"{split}_y"], split, folder)
    return finish(
        "fashion_mnist",
        arrays["train_x"][:, None].astype(np.float32) / 255.0,
        arrays["train_y"].astype(np.int64),
        arrays["test_x"][:, None].astype(np.float32) / 255.0,
        arrays["test_y"].astype(np.int64),
        FASHION_MNIST_CLASSES,
        folder,
    )


# --- scikit-learn digits --------------------------------------------------------


@DATASETS.register
def digits(data_dir: str | os.PathLike | None = None) -> DataSplits:
    """scikit-learn's bundled 8 x 8 digits: 1347 train and 450 test images, (1, 8, 8).

    The split is stratified (25 % test) with a fixed seed, so it is the same
    on every machine. ``data_dir`` is ignored (the data ship with scikit-learn).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0
    y = bunch.target.astype(np.int64)
    train, test = stratified_split(y, 0.25, seed=0)
    names = tuple(str(c) for c in range(10))
    return finish("digits", x[train], y[train], x[test], y[test], names, "scikit-learn (bundled)")


@DATASETS.register
def auto(data_dir: str | os.PathLike | None = None) -> DataSplits:
    """Fashion-MNIST when its files are found, otherwise :func:`digits`.

    An explicit ``data_dir`` without the files is an error, not a fallback.
    """
    if data_dir is not None or find_fashion_mnist() is not None:
        return fashion_mnist(data_dir)
    return digits()
