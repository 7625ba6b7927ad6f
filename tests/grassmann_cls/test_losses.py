"""Cross-entropy with label smoothing."""

from __future__ import annotations

import pytest
import torch

from grassmann_cls import CrossEntropyLoss, cross_entropy
from grassmann_cls.errors import OptionError, ShapeError
from tests.conftest import generator, tolerance


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_its_formula(smoothing, dtype):
    logits = torch.randn(6, 4, dtype=dtype, generator=generator(0))
    target = torch.tensor([0, 1, 2, 3, 1, 0])
    distribution = torch.full((6, 4), smoothing / 4, dtype=dtype)
    distribution[torch.arange(6), target] += 1 - smoothing
    expected = -(distribution * logits.log_softmax(-1)).sum(-1).mean()
    got = cross_entropy(logits, target, label_smoothing=smoothing)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected, atol=tolerance(dtype, 10), rtol=0)
    torch.testing.assert_close(CrossEntropyLoss(label_smoothing=smoothing)(logits, target), got)


def test_soft_targets_are_accepted():
    logits = torch.randn(3, 5, generator=generator(1))
    target = torch.softmax(torch.randn(3, 5, generator=generator(2)), -1)
    expected = -(target * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(cross_entropy(logits, target, reduction="none"), expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"label_smoothing": 1.0}, OptionError, "label_smoothing must be < 1.0; got 1.0"),
        ({"label_smoothing": -0.1}, OptionError, "label_smoothing must be >= 0.0"),
        ({"reduction": "avg"}, OptionError, "reduction must be one of"),
        ({"target": torch.zeros(4, dtype=torch.int64)}, ShapeError, r"target must have shape \(3,\); got \(4,\)"),
    ],
)
def test_bad_arguments_raise(kwargs, error, message):
    target = kwargs.pop("target", torch.zeros(3, dtype=torch.int64))
    with pytest.raises(error, match=message):
        cross_entropy(torch.zeros(3, 5), target, **kwargs)
