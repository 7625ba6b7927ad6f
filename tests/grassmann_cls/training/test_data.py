"""Data loading: built-in sets, Fashion-MNIST IDX files, user .npz and image folders."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grassmann_cls.errors import DataError
from grassmann_cls.training.data import (
    DATASETS,
    DataSplits,
    auto,
    builtin,
    digits,
    fashion_mnist,
    find_fashion_mnist,
    load_dataset,
    load_image_folder,
    load_npz,
    read_idx,
    resize_images,
    split_classes,
    subsample,
)

PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def digit_splits() -> DataSplits:
    return digits()


@pytest.fixture
def no_system_data(monkeypatch, tmp_path):
    """Hide the Debian folder and the environment variable."""
    monkeypatch.setattr(builtin, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv(builtin.ENV_VAR, raising=False)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake_fashion(folder, *, compress: bool, n_train: int = 30, n_test: int = 10, side: int = 6):
    """A tiny, valid Fashion-MNIST look-alike: labels cycle 0..9, pixels from a seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def assert_one_line(err: pytest.ExceptionInfo) -> None:
    message = str(err.value)
    assert message and "\n" not in message


# --- built-in sets ------------------------------------------------------------------


def test_digits_has_fixed_stratified_split_of_standardised_images(digit_splits):
    x, y = digit_splits.train.tensors
    assert x.shape == (1347, 1, 8, 8) and x.dtype == torch.float32
    assert digit_splits.test.tensors[0].shape == (450, 1, 8, 8)
    assert y.dtype == torch.int64 and digit_splits.num_classes == 10
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1.0) < 1e-3
    assert torch.bincount(digit_splits.test.tensors[1]).min() >= 43
    again = digits()
    assert torch.equal(again.test.tensors[0], digit_splits.test.tensors[0])


def test_registry_lists_builtin_sets():
    assert set(DATASETS.names()) == {"fashion_mnist", "digits", "auto"}


@pytest.mark.skipif(find_fashion_mnist() is None, reason="Fashion-MNIST is not installed")
def test_real_fashion_mnist_has_balanced_60000_and_10000_images():
    data = fashion_mnist()
    assert data.image_shape == (1, 28, 28)
    assert len(data.train) == 60000 and len(data.test) == 10000
    assert torch.equal(torch.bincount(data.test.tensors[1]), torch.full((10,), 1000))


# --- IDX files ------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path, compress):
    arrays = write_fake_fashion(tmp_path, compress=compress)
    data = fashion_mnist(tmp_path)
    assert data.image_shape == (1, 6, 6) and len(data.train) == 30 and len(data.test) == 10
    assert torch.equal(data.train.tensors[1], torch.as_tensor(arrays["train-labels-idx1-ubyte"]))
    raw = torch.as_tensor(arrays["t10k-images-idx3-ubyte"], dtype=torch.float32)
    restored = data.test.tensors[0][:, 0]
    assert torch.allclose(torch.corrcoef(torch.stack([raw.flatten(), restored.flatten()]))[0, 1], torch.tensor(1.0))


def test_environment_variable_and_subfolder_are_searched(tmp_path, monkeypatch, no_system_data):
    write_fake_fashion(tmp_path / "fashion-mnist", compress=True)
    monkeypatch.setenv(builtin.ENV_VAR, str(tmp_path))
    assert find_fashion_mnist() is not None
    assert load_dataset("fashion-mnist").source == str(tmp_path / "fashion-mnist")


def test_auto_falls_back_to_digits_without_fashion_mnist(no_system_data):
    assert find_fashion_mnist() is None
    assert auto().name == "digits"


def test_auto_with_explicit_empty_data_dir_is_an_error(tmp_path, no_system_data):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        auto(tmp_path)
    assert_one_line(err)


def test_missing_fashion_mnist_says_how_to_install(no_system_data):
    with pytest.raises(DataError, match="GRASSMANN_CLS_DATA") as err:
        fashion_mnist()
    assert_one_line(err)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[: len(data) - 7],
        lambda data: b"\x01\x02" + data[2:],
        lambda data: data[:6],
        lambda data: b"",
    ],
    ids=["truncated", "bad-magic", "cut-header", "empty"],
)
def test_corrupt_idx_file_raises_data_error(tmp_path, corrupt):
    write_fake_fashion(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match="re-install or re-copy") as err:
        fashion_mnist(tmp_path)
    assert_one_line(err)


def test_broken_gzip_raises_data_error(tmp_path):
    write_fake_fashion(tmp_path, compress=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="cannot read IDX file") as err:
        fashion_mnist(tmp_path)
    assert_one_line(err)


def test_idx_images_and_labels_of_different_lengths_raise(tmp_path):
    write_fake_fashion(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3)))
    with pytest.raises(DataError, match="do not match"):
        fashion_mnist(tmp_path)


def test_read_idx_returns_stored_shape(tmp_path):
    array = np.arange(24).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    assert np.array_equal(read_idx(tmp_path / "a"), array)


# --- user data: .npz ---------------------------------------------------------------------


def test_npz_with_explicit_splits_and_class_names(tmp_path, digit_splits):
    x, y = digit_splits.train.tensors
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=x[:, 0].numpy(),
        y_train=y.numpy(),
        x_test=x[:50, 0].numpy(),
        y_test=y[:50].numpy(),
        class_names=np.array([f"digit {c}" for c in range(10)]),
    )
    data = load_dataset(path)
    assert data.name == "mine" and data.image_shape == (1, 8, 8) and len(data.test) == 50
    assert data.class_names[3] == "digit 3"


def test_npz_with_x_and_y_is_split_stratified(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "xy.npz"
    np.savez(path, x=rng.random((100, 3, 5, 5)), y=np.repeat(np.arange(4), 25))
    data = load_npz(path)
    assert data.image_shape == (3, 5, 5) and len(data.train) == 80 and len(data.test) == 20
    assert torch.equal(torch.bincount(data.test.tensors[1]), torch.full((4,), 5))


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"images": np.zeros((4, 2, 2)), "labels": np.zeros(4, int)}, "expected x_train"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(4, int)}, "must be real images"),
        ({"x": np.zeros((4, 2, 2)), "y": np.zeros(3, int)}, "labels of shape"),
        ({"x": np.zeros((4, 2, 2)), "y": np.array([0, 1, -1, 1])}, "non-negative integer"),
        ({"x": np.zeros((4, 2, 2)), "y": np.array([0.0, 1.0, 0.0, 1.0])}, "non-negative integer"),
        ({"x": np.full((4, 2, 2), np.nan), "y": np.array([0, 1, 0, 1])}, "NaN"),
        ({"x": np.zeros((3, 2, 2)), "y": np.array([0, 1, 1])}, "at least 2 samples"),
        ({"x": np.zeros((4, 2, 2)), "y": np.array([0, 1, 0, 1])}, "at least one per class"),
        ({"x": np.zeros((10, 2, 2)), "y": np.arange(10) % 2, "class_names": np.array(["a"])}, "class_names"),
    ],
    ids=["keys", "shape", "length", "negative", "float-labels", "nan", "too-few", "too-small", "names"],
)
def test_malformed_npz_raises_one_line_data_error(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match) as err:
        load_npz(path)
    assert_one_line(err)


@pytest.mark.parametrize(
    "damage", [lambda data: b"this is not a zip file", lambda data: data[: len(data) // 2]], ids=["text", "truncated"]
)
def test_file_that_is_not_npz_raises_data_error(tmp_path, damage):
    path = tmp_path / "junk.npz"
    np.savez(path, x=np.zeros((10, 2, 2)), y=np.arange(10) % 2)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match="numpy.savez") as err:
        load_dataset(path)
    assert_one_line(err)


# --- user data: image folders --------------------------------------------------------------


def write_images(folder, classes: dict[str, int], size=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(count):
            PIL.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(folder / name / f"{i}.png")


def test_image_folder_is_split_and_classes_sorted(tmp_path):
    write_images(tmp_path, {"cat": 5, "ant": 5, "bee": 10})
    data = load_image_folder(tmp_path)
    assert data.class_names == ("ant", "bee", "cat")
    assert data.image_shape == (1, 5, 6) and len(data.train) + len(data.test) == 20
    assert torch.equal(torch.bincount(data.test.tensors[1]), torch.tensor([1, 2, 1]))


def test_image_folder_with_train_and_test(tmp_path):
    write_images(tmp_path / "train", {"a": 3, "b": 4})
    write_images(tmp_path / "test", {"a": 2, "b": 1}, seed=1)
    data = load_dataset(tmp_path)
    assert (len(data.train), len(data.test)) == (7, 3)
    assert data.test.tensors[1].tolist() == [0, 0, 1]


def test_image_folder_with_corrupt_image_names_the_file(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png") as err:
        load_image_folder(tmp_path)
    assert_one_line(err)


def test_image_folder_with_mixed_sizes_raises(tmp_path):
    write_images(tmp_path, {"a": 3})
    write_images(tmp_path / "more", {"b": 3}, size=(4, 4))
    (tmp_path / "more" / "b").rename(tmp_path / "b")
    with pytest.raises(DataError, match="different sizes"):
        load_image_folder(tmp_path)


def test_image_folder_with_one_class_raises(tmp_path):
    write_images(tmp_path, {"a": 3})
    with pytest.raises(DataError, match="one sub-folder of images per class"):
        load_image_folder(tmp_path)


def test_unknown_name_lists_registered_sets():
    with pytest.raises(DataError, match="fashion_mnist, digits, auto") as err:
        load_dataset("imagenet")
    assert_one_line(err)


# --- transformations --------------------------------------------------------------------------


@given(train=st.integers(1, 1400), seed=st.integers(0, 2**16))
def test_subsample_is_stratified_and_deterministic(digit_splits, train, seed):
    small = subsample(digit_splits, train=train, seed=seed)
    expected = min(train, len(digit_splits.train))
    assert len(small.train) == expected and len(small.test) == len(digit_splits.test)
    counts = torch.bincount(small.train.tensors[1], minlength=10).double()
    full = torch.bincount(digit_splits.train.tensors[1]).double()
    assert (counts - full * expected / len(digit_splits.train)).abs().max() <= 1.0
    again = subsample(digit_splits, train=train, seed=seed)
    assert torch.equal(again.train.tensors[0], small.train.tensors[0])


def test_subsample_rejects_empty_size(digit_splits):
    with pytest.raises(DataError, match=">= 1"):
        subsample(digit_splits, test=0)


def test_split_classes_relabels_in_given_order(digit_splits):
    upper = split_classes(digit_splits, range(5, 10))
    assert upper.num_classes == 5 and upper.class_names == ("5", "6", "7", "8", "9")
    original = digit_splits.train.tensors[1]
    assert len(upper.train) == int((original >= 5).sum())
    assert torch.equal(upper.train.tensors[1], original[original >= 5] - 5)


@pytest.mark.parametrize("classes", [[3], [1, 1], [0, 10]], ids=["one", "repeat", "out-of-range"])
def test_split_classes_rejects_bad_classes(digit_splits, classes):
    with pytest.raises(DataError, match="distinct labels"):
        split_classes(digit_splits, classes)


def test_resize_images_upsamples_and_restandardises(digit_splits):
    big = resize_images(digit_splits, 28)
    x = big.train.tensors[0]
    assert big.image_shape == (1, 28, 28) and len(big.test) == len(digit_splits.test)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3
    assert torch.equal(big.train.tensors[1], digit_splits.train.tensors[1])


def test_install_script_never_fails_and_says_what_it_does():
    import subprocess
    from pathlib import Path

    script = Path(__file__).parents[3] / "scripts" / "install-data.sh"
    done = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "GRASSMANN_CLS_NO_INSTALL": "1"},
    )
    assert done.returncode == 0
    assert done.stdout.startswith("data: ") and ("Fashion-MNIST" in done.stdout or "digits" in done.stdout)
