"""Image folders in the ImageNet layout, read from disk: layout checks, per-sample seeded augmentation, training.

torchvision is optional, so these tests pass their own small transforms;
the default (torchvision) transforms are only checked for the error that
says torchvision is missing.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from grassmann_cls.errors import DataError, ShapeError
from grassmann_cls.training.analysis import feature_statistics
from grassmann_cls.training.backbones import extract_features
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import DiskImages, prepare, repeat_channels, resize_images, split_classes, subsample
from grassmann_cls.training.data.imagefolder import FolderImages, load_imagefolder
from grassmann_cls.training.evaluation import evaluate_model
from grassmann_cls.training.train import train

CLASSES, PER_CLASS, SIDE, CROP = ("n01", "n02", "n03"), 8, 12, 8


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)


def random_crop_flip(image: Image.Image) -> torch.Tensor:
    """A random crop and flip drawn from the global torch RNG, like torchvision's."""
    x = to_tensor(image)
    top, left = torch.randint(0, SIDE - CROP + 1, (2,)).tolist()
    x = x[:, top : top + CROP, left : left + CROP]
    return x.flip(-1) if torch.rand(()) < 0.5 else x


def center_crop(image: Image.Image) -> torch.Tensor:
    start = (SIDE - CROP) // 2
    return to_tensor(image)[:, start : start + CROP, start : start + CROP]


TRANSFORMS = (random_crop_flip, center_crop)


def make_folder(root, test_name: str = "val", classes=CLASSES):
    rng = np.random.default_rng(0)
    for split, count in (("train", PER_CLASS), (test_name, PER_CLASS // 2)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (SIDE, SIDE, 3)).astype(np.uint8)
                pixels[..., label] = 255 - i  # a colour per class: learnable
                Image.fromarray(pixels).save(root / split / name / f"img{i}.{'JPEG' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("imagenet"))


def test_imagenet_layout_gives_sorted_classes_and_rgb_crops(folder):
    data = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS)
    assert data.class_names == CLASSES and data.num_classes == 3 and data.image_shape == (3, CROP, CROP)
    assert (len(data.train), len(data.test)) == (3 * PER_CLASS, 3 * PER_CLASS // 2)
    x, y = data.test[5]
    assert x.shape == (3, CROP, CROP) and y == 5 // (PER_CLASS // 2)
    assert data.train.seeded_by_epoch and not data.test.seeded_by_epoch


def test_augmentation_is_a_function_of_seed_epoch_and_sample_alone(folder):
    data = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS, seed=3)
    rng = torch.get_rng_state()
    draws = [data.train[(epoch, 4)][0] for epoch in range(6)]
    assert torch.equal(torch.get_rng_state(), rng)  # the global stream is left alone
    assert torch.equal(data.train[(2, 4)][0], draws[2]) and torch.equal(data.train[4][0], draws[0])
    assert len({d.numpy().tobytes() for d in draws}) > 1
    other = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS, seed=4)
    assert not all(torch.equal(other.train[(e, 4)][0], draws[e]) for e in range(6))


def test_classes_and_subsets_are_selected_and_relabelled(folder):
    data = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS, classes=[2, 0], train_size=6, test_size=4)
    assert data.class_names == ("n03", "n01") and data.num_classes == 2 and data.name.endswith("[2,0]")
    assert len(data.train) == 6 and len(data.test) == 4
    assert sorted(data.train.labels) == [0, 0, 0, 1, 1, 1]
    assert all("n03" in f for f, y in zip(data.train.files, data.train.labels) if y == 0)


@pytest.mark.parametrize(
    ("layout", "message"),
    [("no-val", "ImageNet layout"), ("one-class", "at least 2"), ("val-lacks-class", "lacks")],
)
def test_a_wrong_layout_is_a_data_error(tmp_path, layout, message):
    if layout == "no-val":
        (tmp_path / "train" / "a").mkdir(parents=True)
    elif layout == "one-class":
        make_folder(tmp_path, classes=("a",))
    else:
        make_folder(tmp_path)
        for path in (tmp_path / "val" / "n02").iterdir():
            path.unlink()
        (tmp_path / "val" / "n02").rmdir()
    with pytest.raises(DataError, match=message):
        load_imagefolder(tmp_path, transforms=TRANSFORMS)


def test_the_test_split_may_be_called_test(tmp_path):
    data = load_imagefolder(make_folder(tmp_path, test_name="test"), image_size=CROP, transforms=TRANSFORMS)
    assert len(data.test) == 3 * PER_CLASS // 2


def test_a_damaged_image_is_a_data_error(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "val" / "n01" / "img0.png").write_bytes(b"not an image")
    data = load_imagefolder(tmp_path, image_size=CROP, transforms=TRANSFORMS)
    with pytest.raises(DataError, match="img0.png"):
        data.test[0]


def test_missing_torchvision_is_a_data_error(folder, monkeypatch):
    find_spec = importlib.util.find_spec

    def without_torchvision(name, *args):
        return None if name == "torchvision" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_torchvision)
    with pytest.raises(DataError, match="pip install torchvision"):
        prepare(f"imagefolder:{folder}")


def folder_config(folder, *, epochs: int) -> TrainConfig:
    """A small MLP run on the image folder."""
    return TrainConfig(
        dataset=f"imagefolder:{folder}",
        backbone="mlp",
        width=16,
        subspace_dim=2,
        epochs=epochs,
        batch_size=8,
        lr=0.05,
        progress=False,
    )


def test_training_reads_the_folder_and_workers_change_nothing(folder):
    data = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS)
    config = folder_config(folder, epochs=2)
    losses = {}
    for workers in (0, 2):
        steps = []
        result = train(
            config.replace(workers=workers), data=data, on_step_end=lambda s, steps=steps: steps.append(s["loss"])
        )
        losses[workers] = steps
    assert len(losses[0]) == 2 * 3 and losses[0] == losses[2]
    assert set(result.metrics) >= {"test_top1", "train_loss"} and result.metrics["test_top1"] > 50.0
    assert evaluate_model(result.model, data.test, batch_size=5)["top1"] == result.metrics["test_top1"]


def test_features_of_folder_images_feed_the_analysis(folder):
    data = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS)
    config = folder_config(folder, epochs=1)
    model = train(config, data=data).model
    features, labels = extract_features(model, data.test, batch_size=5)
    stacked = torch.stack([data.test[i][0] for i in range(len(data.test))])
    expected, _ = extract_features(model, stacked, batch_size=5)
    assert torch.equal(features, expected) and labels.tolist() == data.test.labels
    stats = feature_statistics(features, labels, model.fc)
    assert 0.0 < stats["variability"] < 90.0 and -1.0 <= stats["r2"] <= 1.0
    with pytest.raises(ShapeError, match="shape"):
        extract_features(model, FolderImages(data.test.files, data.test.labels, to_tensor, (3, SIDE, SIDE)))


def test_folder_images_need_one_label_per_file():
    with pytest.raises(DataError, match="2 files but 1 labels"):
        FolderImages(["a.png", "b.png"], [0], center_crop, (3, CROP, CROP))


@pytest.mark.parametrize(
    ("transform", "action"),
    [
        (lambda data: subsample(data, train=3), "a subset"),
        (lambda data: split_classes(data, [0, 1]), "a class split"),
        (lambda data: resize_images(data, 8), "resizing"),
        (lambda data: repeat_channels(data), "only one-channel"),
    ],
)
def test_in_memory_transforms_refuse_folder_images_with_a_data_error(folder, transform, action):
    data = load_imagefolder(folder, image_size=CROP, transforms=TRANSFORMS)
    assert isinstance(data.train, DiskImages) and isinstance(data.test, DiskImages)
    with pytest.raises(DataError, match=action):
        transform(data)
