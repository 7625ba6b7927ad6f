"""Linear probes on frozen features."""

from __future__ import annotations

import pytest
import torch

from grassmann_cls.errors import ConfigError, OptionError, ShapeError
from grassmann_cls.experiments.transfer import PROBES, linear_probe, transfer
from grassmann_cls.training.backbones import build_backbone
from grassmann_cls.training.data import digits, resize_images, split_classes
from tests.conftest import generator


@pytest.fixture(scope="module")
def digit_splits():
    return digits()


def pixels(data):
    """Flattened images as features, shape ``(N, 64)``."""
    return data.tensors[0].flatten(1), data.tensors[1]


@pytest.mark.parametrize("probe", PROBES.names())
def test_probe_on_digit_pixels_is_accurate(digit_splits, probe):
    result = linear_probe(*pixels(digit_splits.train), *pixels(digit_splits.test), probe=probe)
    assert result.accuracy > 93.0 and result.probe == probe
    assert (result.num_train, result.num_test, result.feature_dim) == (1347, 450, 64)


def test_probe_is_invariant_to_feature_scale(digit_splits):
    x_train, y_train = pixels(digit_splits.train)
    x_test, y_test = pixels(digit_splits.test)
    scale = torch.logspace(-3, 3, 64)
    plain = linear_probe(x_train, y_train, x_test, y_test)
    scaled = linear_probe(x_train * scale, y_train, x_test * scale, y_test)
    assert scaled.accuracy == pytest.approx(plain.accuracy, abs=0.5)


def test_separable_features_give_full_accuracy():
    g = generator(0)
    labels = torch.arange(60) % 3
    features = torch.nn.functional.one_hot(labels).float() * 5 + 0.1 * torch.randn(60, 3, generator=g)
    result = linear_probe(features[:40], labels[:40], features[40:], labels[40:], probe="svm")
    assert result.accuracy == 100.0 and result.train_accuracy == 100.0


def test_custom_probe_callable_is_used():
    from sklearn.dummy import DummyClassifier

    labels = torch.tensor([0, 0, 0, 1])
    result = linear_probe(
        torch.randn(4, 2),
        labels,
        torch.randn(2, 2),
        torch.tensor([0, 1]),
        probe=lambda regularization, seed: DummyClassifier(),
    )
    assert result.accuracy == 50.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"probe": "forest"}, OptionError, "logistic, svm"),
        ({"regularization": 0.0}, ConfigError, "regularization"),
        ({"regularization": float("nan")}, ConfigError, "regularization"),
    ],
    ids=["unknown-probe", "zero-C", "nan-C"],
)
def test_bad_probe_options_raise(digit_splits, kwargs, error, match):
    with pytest.raises(error, match=match):
        linear_probe(*pixels(digit_splits.train), *pixels(digit_splits.test), **kwargs)


@pytest.mark.parametrize(
    ("train", "test", "error"),
    [
        ((torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), (torch.randn(2, 3), torch.tensor([0, 1])), ShapeError),
        (
            (torch.full((4, 2), float("nan")), torch.tensor([0, 1, 0, 1])),
            (torch.randn(2, 2), torch.tensor([0, 1])),
            ShapeError,
        ),
        ((torch.randn(4, 2), torch.tensor([1, 1, 1, 1])), (torch.randn(2, 2), torch.tensor([0, 1])), ConfigError),
        ((torch.randn(4, 2), torch.tensor([0, 1, 0])), (torch.randn(2, 2), torch.tensor([0, 1])), ShapeError),
    ],
    ids=["widths", "nan", "one-class", "lengths"],
)
def test_bad_features_raise(train, test, error):
    with pytest.raises(error):
        linear_probe(*train, *test)


def test_transfer_from_digits_0_to_4_onto_5_to_9_leaves_model_unchanged(digit_splits):
    torch.manual_seed(0)
    model = build_backbone("mlp", in_shape=(1, 8, 8), num_classes=5, width=32).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = transfer(model, split_classes(digit_splits, range(5, 10)))
    assert result.num_test == 224 and result.feature_dim == 32 and result.accuracy > 60.0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_transfer_needs_matching_image_shape(digit_splits):
    model = build_backbone("cnn", in_shape=(1, 28, 28), num_classes=10, width=4)
    with pytest.raises(ConfigError, match="resize"):
        transfer(model, digit_splits)
    assert transfer(model, resize_images(digit_splits, 28), probe="svm").num_train == 1347
