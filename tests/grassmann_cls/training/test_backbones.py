"""Backbones: features and a replaceable fc, for every registered name."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from grassmann_cls.errors import ConfigError, DataError, GrassmannError, ManifoldTypeError, OptionError, ShapeError
from grassmann_cls.training.backbones import BACKBONES, Backbone, backbone_names, build_backbone, extract_features
from grassmann_cls.training.data import digits
from tests.conftest import generator

SHAPES = [(1, 28, 28), (1, 8, 8), (3, 5, 7)]


@pytest.fixture(scope="module")
def digit_splits():
    return digits()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", BACKBONES.names())
def test_features_have_feature_dim_and_forward_is_fc_of_features(name, shape):
    torch.manual_seed(0)
    model = build_backbone(name, in_shape=shape, num_classes=7, width=8).eval()
    x = torch.randn(5, *shape, generator=generator(1))
    features = model.features(x)
    assert features.shape == (5, model.feature_dim)
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == model.feature_dim
    assert torch.allclose(model(x), model.fc(features))
    assert model.in_shape == shape


@pytest.mark.parametrize("name", BACKBONES.names())
def test_replacing_fc_changes_the_classifier_only(name):
    model = build_backbone(name, in_shape=(1, 8, 8), num_classes=3).eval()
    model.fc = nn.Identity()
    x = torch.randn(4, 1, 8, 8, generator=generator(2))
    assert torch.equal(model(x), model.features(x))


def test_registry_names_are_the_plain_backbones():
    assert BACKBONES.names() == ("mlp", "cnn", "resnet")
    assert set(BACKBONES.names()) <= set(backbone_names())


def test_builder_callable_is_accepted():
    model = build_backbone(lambda shape, classes, width: Backbone(), in_shape=(1, 2, 2), num_classes=2)
    assert isinstance(model, Backbone)


def test_unknown_name_lists_names():
    with pytest.raises(OptionError, match="mlp, cnn, resnet"):
        build_backbone("vgg", in_shape=(1, 8, 8), num_classes=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_shape": (1, 8), "num_classes": 10}, "in_shape"),
        ({"in_shape": (1, 0, 8), "num_classes": 10}, "in_shape"),
        ({"in_shape": (1, 8, 8), "num_classes": 1}, "num_classes"),
        ({"in_shape": (1, 8, 8), "num_classes": 10, "width": -3}, "width"),
    ],
    ids=["rank", "zero-size", "one-class", "width"],
)
def test_bad_sizes_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_backbone("cnn", **kwargs)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_missing_torchvision_says_how_to_install():
    with pytest.raises(ConfigError, match="pip install torchvision"):
        build_backbone("torchvision:resnet18", in_shape=(1, 28, 28), num_classes=10)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_torchvision_model_gets_a_new_fc():
    model = build_backbone("torchvision:resnet18", in_shape=(1, 32, 32), num_classes=10).eval()
    x = torch.randn(2, 1, 32, 32)
    assert model.features(x).shape == (2, 512) and model(x).shape == (2, 10)


def test_unknown_external_package_is_a_library_error():
    with pytest.raises(GrassmannError, match="unknown backbone"):
        build_backbone("keras:resnet", in_shape=(1, 8, 8), num_classes=10)


def test_extract_features_is_batch_size_independent_and_keeps_mode(digit_splits):
    torch.manual_seed(0)
    model = build_backbone("resnet", in_shape=(1, 8, 8), num_classes=10, width=4).train()
    small, labels = extract_features(model, digit_splits.test, batch_size=7)
    large, _ = extract_features(model, digit_splits.test.tensors[0], batch_size=1000)
    assert model.training
    assert small.shape == (450, model.feature_dim) and torch.equal(labels, digit_splits.test.tensors[1])
    assert torch.allclose(small, large, atol=1e-5)


@pytest.mark.parametrize(
    ("images", "batch_size", "error", "message"),
    [
        (torch.zeros(2, 3, 8, 8), 4, ShapeError, r"\(N, 1, 8, 8\); got \(2, 3, 8, 8\)"),
        (torch.zeros(2, 1, 9, 8), 4, ShapeError, r"\(N, 1, 8, 8\); got \(2, 1, 9, 8\)"),
        (torch.zeros(2, 64), 4, ShapeError, r"got \(2, 64\)"),
        (torch.zeros(0, 1, 8, 8), 4, DataError, "N=0"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.int64), 4, ManifoldTypeError, "floating tensor"),
        ([[0.0]], 4, ManifoldTypeError, "got list"),
        (torch.zeros(2, 1, 8, 8), 0, OptionError, "batch_size must be >= 1; got 0"),
    ],
    ids=["channels", "height", "flat", "empty", "int", "list", "batch-size"],
)
def test_extract_features_refuses_bad_input_stating_expected_and_got(images, batch_size, error, message):
    model = build_backbone("cnn", in_shape=(1, 8, 8), num_classes=10, width=4)
    with pytest.raises(error, match=message):
        extract_features(model, images, batch_size=batch_size)


def test_mlp_learns_digits_in_a_few_epochs(digit_splits):
    torch.manual_seed(0)
    model = build_backbone("mlp", in_shape=(1, 8, 8), num_classes=10, width=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = digit_splits.train.tensors
    for _ in range(3):
        for index in torch.randperm(len(y), generator=generator(3)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
    model.eval()
    x_test, y_test = digit_splits.test.tensors
    accuracy = (model(x_test).argmax(1) == y_test).float().mean()
    assert accuracy > 0.9
