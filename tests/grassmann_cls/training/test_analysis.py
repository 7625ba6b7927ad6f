"""Variability, class separation and principal angles, against known answers and references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import manifolds
from grassmann_cls.errors import NonFiniteError, ShapeError
from grassmann_cls.training import analysis
from grassmann_cls.training.analysis import (
    class_bases,
    class_principal_angles,
    class_separation,
    distinct_pairs,
    feature_statistics,
    intra_class_variability,
    within_class_angles,
)
from tests.conftest import generator


def planar(degrees: list[float], dtype=torch.float64) -> torch.Tensor:
    """Unit vectors in the plane at the given angles, shape ``(len(degrees), 2)``."""
    radians = torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))
    return torch.stack([radians.cos(), radians.sin()], 1).to(dtype)


def reference_variability(features: np.ndarray, labels: np.ndarray) -> float:
    """Per-pair loop over the definition, in numpy float64."""
    means = []
    for c in np.unique(labels):
        f = features[labels == c].astype(np.float64)
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        angles = [math.degrees(math.acos(min(1.0, max(-1.0, a @ b)))) for a, b in itertools.combinations(f, 2)]
        if angles:
            means.append(np.mean(angles))
    return float(np.mean(means))


def reference_r2(features: np.ndarray, labels: np.ndarray) -> float:
    """Kornblith et al.'s double sums over an explicit cosine-distance matrix."""
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    distance = 1.0 - f @ f.T
    classes = np.unique(labels)
    blocks = {(a, b): distance[np.ix_(labels == a, labels == b)].mean() for a in classes for b in classes}
    within = np.mean([blocks[(c, c)] for c in classes])
    total = np.mean(list(blocks.values()))
    return 1.0 - within / total


def test_variability_of_planar_vectors_is_the_mean_pairwise_angle(dtype):
    features = torch.cat([planar([0, 30, 60], dtype), 5.0 * planar([10, 100], dtype)])
    labels = torch.tensor([0, 0, 0, 1, 1])
    assert within_class_angles(features, labels).tolist() == pytest.approx([40.0, 90.0], abs=1e-3)
    assert intra_class_variability(features, labels) == pytest.approx(65.0, abs=1e-3)


def test_variability_skips_singleton_classes_and_counts_zero_features_as_orthogonal():
    features = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    labels = torch.tensor([0, 0, 2])
    per_class = within_class_angles(features, labels)
    assert per_class[0] == pytest.approx(90.0) and per_class[1:].isnan().all()
    assert intra_class_variability(features, labels) == pytest.approx(90.0)


@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), classes=st.integers(1, 4))
def test_variability_matches_per_pair_reference(seed, n, classes):
    g = generator(seed)
    labels = torch.arange(13) % classes
    features = torch.randn(13, n, generator=g, dtype=torch.float64).abs()
    expected = reference_variability(features.numpy(), labels.numpy())
    assert intra_class_variability(features, labels) == pytest.approx(expected, abs=1e-8)


def test_variability_does_not_depend_on_the_block_size(monkeypatch):
    g = generator(4)
    features, labels = torch.randn(50, 3, generator=g), torch.arange(50) % 2
    whole = within_class_angles(features, labels)
    monkeypatch.setattr(analysis, "_BLOCK", 4)
    assert torch.allclose(within_class_angles(features, labels), whole, atol=1e-10)


def test_variability_and_r2_ignore_feature_norms(dtype):
    g = generator(5)
    features, labels = torch.randn(40, 6, generator=g, dtype=dtype), torch.arange(40) % 4
    scaled = features * torch.rand(40, 1, generator=g, dtype=dtype).add(0.1) * 100
    assert intra_class_variability(scaled, labels) == pytest.approx(intra_class_variability(features, labels), abs=1e-4)
    assert class_separation(scaled, labels) == pytest.approx(class_separation(features, labels), abs=1e-6)


def test_r2_of_two_orthogonal_pairs_is_one_third():
    features = torch.eye(4)
    labels = torch.tensor([0, 0, 1, 1])
    # d_within = 1 - 1/2, d_total = 1 - 1/4, R^2 = 1 - (1/2) / (3/4).
    assert class_separation(features, labels) == pytest.approx(1 / 3)


def test_r2_of_collapsed_orthogonal_classes_is_one():
    features = torch.eye(3).repeat_interleave(4, 0) * 2.0
    assert class_separation(features, torch.arange(3).repeat_interleave(4)) == pytest.approx(1.0)


def test_r2_of_identical_directions_is_nan():
    assert math.isnan(class_separation(torch.ones(4, 3), torch.tensor([0, 0, 1, 1])))


@given(seed=st.integers(0, 2**16), classes=st.integers(2, 5))
def test_r2_matches_pairwise_definition_with_unbalanced_classes(seed, classes):
    g = generator(seed)
    labels = torch.randint(0, classes, (30,), generator=g)
    labels[:classes] = torch.arange(classes)
    features = torch.randn(30, 4, generator=g, dtype=torch.float64)
    expected = reference_r2(features.numpy(), labels.numpy())
    assert class_separation(features, labels) == pytest.approx(expected, abs=1e-10)


def test_r2_of_random_labels_is_near_zero():
    g = generator(6)
    features, labels = torch.randn(4000, 8, generator=g), torch.randint(0, 5, (4000,), generator=g)
    assert abs(class_separation(features, labels)) < 0.01


@pytest.mark.parametrize(
    ("features", "labels"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.int64)),
        (torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64)),
        (torch.zeros(3, 2), torch.zeros(3)),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64)),
        (torch.zeros(2, 2), torch.tensor([0, -1])),
    ],
    ids=["1d-features", "length", "float-labels", "empty", "negative"],
)
def test_bad_feature_shapes_raise_shape_error(features, labels):
    with pytest.raises(ShapeError):
        class_separation(features, labels)
    with pytest.raises(ShapeError):
        intra_class_variability(features, labels)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("fn", [class_separation, intra_class_variability, within_class_angles])
def test_non_finite_features_raise_non_finite_error(fn, bad):
    features = torch.eye(4)
    features[1, 2] = bad
    with pytest.raises(NonFiniteError, match="features holds NaN or Inf"):
        fn(features, torch.tensor([0, 0, 1, 1]))


def test_principal_angles_of_known_subspaces(dtype):
    t = 0.3
    e = torch.eye(4, dtype=dtype)
    bases = torch.stack([e[:, :2], torch.stack([e[:, 0], math.cos(t) * e[:, 1] + math.sin(t) * e[:, 2]], 1)])
    angles = class_principal_angles(bases)
    assert angles.shape == (2, 2, 2)
    assert torch.allclose(angles[0, 1], torch.tensor([0.0, t], dtype=dtype), atol=1e-6)
    assert torch.allclose(angles[0, 0], torch.zeros(2, dtype=dtype), atol=1e-6)


def test_principal_angles_match_scipy_and_are_symmetric():
    g = generator(7)
    bases = torch.linalg.qr(torch.randn(5, 9, 3, generator=g, dtype=torch.float64)).Q
    angles = class_principal_angles(bases)
    expected = scipy.linalg.subspace_angles(bases[1].numpy(), bases[3].numpy())
    assert np.allclose(np.sort(expected), angles[1, 3].numpy(), atol=1e-12)
    assert torch.allclose(angles, angles.transpose(0, 1), atol=1e-12)
    assert distinct_pairs(angles).shape == (10, 3)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_class_angles_of_orthonormal_and_other_bases_equal_the_differentiable_angles(dtype, scale):
    # Orthonormal bases take manifolds.inplace.principal_angles, others principal_angles (after QR).
    bases = torch.linalg.qr(torch.randn(6, 12, 3, generator=generator(8), dtype=torch.float64)).Q
    expected = manifolds.principal_angles(bases[:, None], bases[None]).to(dtype)
    angles = class_principal_angles((bases * scale).to(dtype))
    assert angles.dtype == dtype
    torch.testing.assert_close(angles, expected, atol=100 * 12 * torch.finfo(dtype).eps, rtol=0)


def test_vector_head_classes_are_lines_and_sign_is_ignored():
    linear = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [-1.0, 1.0, 0.0]]))
    bases = class_bases(linear)
    assert bases.shape == (2, 3, 1)
    assert class_principal_angles(linear)[0, 1, 0] == pytest.approx(math.pi / 4)


def test_module_with_bases_attribute_is_accepted():
    head = nn.Module()
    head.bases = nn.Parameter(torch.eye(4)[:, :2].expand(3, 4, 2).clone())
    assert class_bases(head).shape == (3, 4, 2) and not class_bases(head).requires_grad


@pytest.mark.parametrize("bad", [torch.zeros(3, 4), torch.zeros(2, 3, 4), nn.ReLU()], ids=["2d", "k>n", "module"])
def test_bad_bases_raise_shape_error(bad):
    with pytest.raises(ShapeError):
        class_bases(bad)


def test_feature_statistics_reports_all_summaries():
    features = torch.cat([planar([0, 30, 60]), planar([90, 120, 150])])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    stats = feature_statistics(features, labels, head)
    assert stats["variability"] == pytest.approx(40.0)
    assert stats["min_principal_angle"] == pytest.approx(90.0)
    assert set(stats) == {
        "variability",
        "r2",
        "min_principal_angle",
        "mean_principal_angle",
        "mean_smallest_principal_angle",
    }


PADDED_DIMS = (1, 3, 2, 3)


def test_class_angles_of_a_head_with_one_k_per_class_use_each_classs_true_k():
    from grassmann_cls import GrassmannHead

    head = GrassmannHead(6, len(PADDED_DIMS), PADDED_DIMS, dtype=torch.float64, generator=generator(0))
    angles = class_principal_angles(head)
    assert angles.shape == (4, 4, 3)
    bases = head.bases.detach()
    for i, j in itertools.product(range(4), repeat=2):
        k = min(PADDED_DIMS[i], PADDED_DIMS[j])
        expected = np.sort(
            scipy.linalg.subspace_angles(bases[i, :, : PADDED_DIMS[i]].numpy(), bases[j, :, : PADDED_DIMS[j]].numpy())
        )
        np.testing.assert_allclose(angles[i, j, :k].numpy(), expected, atol=1e-7, rtol=0)
        assert bool(torch.isnan(angles[i, j, k:]).all())
    pairs = analysis.pair_angles(angles)
    assert pairs.numel() == sum(min(PADDED_DIMS[i], PADDED_DIMS[j]) for i, j in itertools.combinations(range(4), 2))
    features = torch.randn(20, 6, dtype=torch.float64, generator=generator(1))
    stats = feature_statistics(features, torch.arange(20) % 4, head)
    assert all(
        math.isfinite(stats[key])
        for key in ("min_principal_angle", "mean_principal_angle", "mean_smallest_principal_angle")
    )


def test_principal_angle_plot_takes_a_head_with_one_k_per_class(tmp_path):
    from grassmann_cls import GrassmannHead
    from grassmann_cls.experiments.demo_report import plot_principal_angles

    head = GrassmannHead(6, len(PADDED_DIMS), PADDED_DIMS, generator=generator(0))
    degrees = torch.rad2deg(analysis.pair_angles(class_principal_angles(head))).tolist()
    runs = [{"head": "gcr", "k": head.subspace_dim, "seed": 0, "principal_angles": degrees}]
    assert plot_principal_angles(runs, tmp_path) == "principal_angles.png"
    assert (tmp_path / "principal_angles.png").stat().st_size > 0
