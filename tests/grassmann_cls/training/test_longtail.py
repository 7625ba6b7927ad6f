"""Long-tailed training sets: the exponential profile, the shot groups, and training with them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grassmann_cls.errors import ConfigError, DataError
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import digits, group_accuracies, long_tail, long_tail_counts, prepare, shot_groups
from grassmann_cls.training.train import train


def test_profile_of_fashion_mnist_at_ratio_100_is_cao_et_al():
    # floor(6000 * 100^(-c/9)), by hand.
    assert long_tail_counts(6000, 10, 100.0) == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]


def test_profile_of_fashion_mnist_at_ratio_10():
    assert long_tail_counts(6000, 10, 10.0) == [6000, 4645, 3596, 2784, 2156, 1669, 1292, 1000, 774, 600]


@given(n_max=st.integers(1, 10_000), classes=st.integers(2, 50), ratio=st.floats(1.0, 1000.0))
def test_profile_runs_from_n_max_to_n_max_over_ratio_non_increasing(n_max, classes, ratio):
    counts = long_tail_counts(n_max, classes, ratio)
    assert len(counts) == classes and counts[0] == n_max
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[-1] == max(1, math.floor(n_max / ratio + 1e-9))


def test_ratio_one_is_balanced():
    assert long_tail_counts(7, 4, 1.0) == [7, 7, 7, 7]


@pytest.mark.parametrize("args", [(0, 10, 10.0), (10, 1, 10.0), (10, 10, 0.5), (10, 10, float("nan"))])
def test_bad_profile_arguments_are_refused(args):
    with pytest.raises(DataError):
        long_tail_counts(*args)


def test_long_tail_draws_exact_counts_seeded_and_keeps_the_test_split():
    data = prepare("digits", classes=range(5))
    n_max = int(torch.bincount(data.train.tensors[1]).min())
    tail = long_tail(data, 10.0, seed=3)
    counts = torch.bincount(tail.train.tensors[1], minlength=5).tolist()
    assert counts == long_tail_counts(n_max, 5, 10.0)
    assert torch.equal(tail.test.tensors[0], data.test.tensors[0])
    again, other = long_tail(data, 10.0, seed=3), long_tail(data, 10.0, seed=4)
    assert torch.equal(again.train.tensors[0], tail.train.tensors[0])
    assert not torch.equal(other.train.tensors[0], tail.train.tensors[0])


def test_shot_groups_use_fifths_and_twenty_fifths_of_the_head():
    assert shot_groups(long_tail_counts(6000, 10, 100.0)) == {
        "many": [0, 1, 2, 3],
        "medium": [4, 5, 6],
        "few": [7, 8, 9],
    }
    assert shot_groups(long_tail_counts(6000, 10, 10.0)) == {"many": list(range(7)), "medium": [7, 8, 9], "few": []}
    # Boundaries: exactly n_max/5 is medium, exactly n_max/25 is medium.
    assert shot_groups([100, 20, 4, 3]) == {"many": [0], "medium": [1, 2], "few": [3]}


def test_group_accuracies_weight_each_group_by_its_test_samples():
    result = group_accuracies([10, 5, 1, 0], [10, 10, 10, 10], [100, 50, 10, 1])
    assert result == {"top1": 40.0, "many_top1": 75.0, "medium_top1": 10.0, "few_top1": 0.0}
    assert group_accuracies([1, 1], [2, 2], [10, 9])["few_top1"] is None


def test_config_refuses_a_ratio_below_one():
    with pytest.raises(ConfigError, match="imbalance_ratio"):
        TrainConfig(imbalance_ratio=0.5)


def test_long_tailed_training_records_counts_and_group_accuracies(tmp_path):
    config = TrainConfig(
        dataset="digits",
        imbalance_ratio=10.0,
        epochs=1,
        width=16,
        subspace_dim=2,
        progress=False,
        output=str(tmp_path / "run"),
    )
    result = train(config)
    n_max = int(torch.bincount(digits().train.tensors[1]).min())
    assert result.data["train_counts"] == long_tail_counts(n_max, 10, 10.0)
    assert result.data["num_train"] == sum(result.data["train_counts"])
    final = result.metrics
    assert {"test_many_top1", "test_medium_top1", "test_few_top1"} <= set(final)
    assert final["test_few_top1"] is None  # R = 10 leaves no class below n_max / 25
