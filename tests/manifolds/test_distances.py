"""Contract tests run over every entry of ``manifolds.DISTANCES``, and ``cdist``.

Each distance is checked against an independent float64 re-derivation from
its textbook definition (projectors, determinants, Procrustes, scipy angles),
for the metric axioms and invariances, for its pairwise form, and under
autograd.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import DISTANCES, Grassmann, cdist, expmap, to_scipy
from manifolds.errors import ShapeError
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import DEVICES, orthogonal, point, seeds, shapes, tangent

# Entries that are not metrics on the Grassmannian (skip the triangle
# inequality). Every built-in entry is a metric.
NOT_METRICS: frozenset[str] = frozenset()


def _projector_difference(x, y):
    return x @ x.T - y @ y.T


def _procrustes(x, y):
    w, _, zh = np.linalg.svd(x.T @ y)
    return np.linalg.norm(x @ w @ zh - y)


# Independent float64 definitions on NumPy arrays (n, k).
REFERENCES = {
    "geodesic": lambda x, y: np.linalg.norm(scipy.linalg.subspace_angles(x, y)),
    "chordal": lambda x, y: np.linalg.norm(_projector_difference(x, y)) / np.sqrt(2),
    "projection_2": lambda x, y: np.linalg.norm(_projector_difference(x, y), ord=2),
    "fubini_study": lambda x, y: np.arccos(min(abs(np.linalg.det(x.T @ y)), 1.0)),
    "binet_cauchy": lambda x, y: np.sqrt(1 - np.linalg.det(x.T @ y) ** 2),
    "procrustes": _procrustes,
    "asimov": lambda x, y: scipy.linalg.subspace_angles(x, y).max(),
}


def test_every_distance_has_a_reference():
    assert set(DISTANCES.names()) <= set(REFERENCES)


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(max_batch=1, min_codim=1), seed=seeds, radius=st.floats(0.3, 1.4))
def test_distance_matches_its_definition(name, shape, seed, radius):
    """At a step of spectral norm in [0.3, 1.4] no reference formula is ill-conditioned."""
    _, n, k = shape
    gen = generator(seed)
    x = point((), n, k, torch.float64, gen)
    y = expmap(x, tangent(x, gen, spectral_norm=radius))
    expected = REFERENCES[name](to_scipy(x), to_scipy(y))
    atol = tolerance(torch.float64, n, factor=100)
    np.testing.assert_allclose(DISTANCES.resolve(name)(x, y).item(), expected, atol=atol, rtol=0)


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(), seed=seeds)
def test_distance_is_symmetric(name, dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, dtype, gen), point(batch, n, k, dtype, gen)
    distance = DISTANCES.resolve(name)
    torch.testing.assert_close(distance(y, x), distance(x, y), atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(), seed=seeds)
def test_distance_is_zero_for_the_same_subspace(name, dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    d = DISTANCES.resolve(name)(x, x @ orthogonal(batch, k, dtype, gen))
    torch.testing.assert_close(d, torch.zeros_like(d), atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(1e-3, 1.5))
def test_distance_is_positive_for_different_subspaces(name, dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    y = expmap(x, tangent(x, gen, spectral_norm=radius))
    assert bool((DISTANCES.resolve(name)(x, y) > 0).all())


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(), seed=seeds)
def test_distance_is_invariant_under_change_of_basis_and_rotation(name, dtype, shape, seed):
    """``d(x Q1, y Q2) = d(x, y)`` for ``Q_i`` in O(k) and ``d(O x, O y) = d(x, y)`` for O in O(n)."""
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, dtype, gen), point(batch, n, k, dtype, gen)
    distance = DISTANCES.resolve(name)
    expected = distance(x, y)
    atol = tolerance(dtype, n, factor=100)
    q1, q2 = orthogonal(batch, k, dtype, gen), orthogonal(batch, k, dtype, gen)
    torch.testing.assert_close(distance(x @ q1, y @ q2), expected, atol=atol, rtol=0)
    rotation = orthogonal(batch, n, dtype, gen)
    torch.testing.assert_close(distance(rotation @ x, rotation @ y), expected, atol=atol, rtol=0)


@pytest.mark.parametrize("name", [name for name in DISTANCES.names() if name not in NOT_METRICS])
@given(shape=shapes(), seed=seeds)
def test_distance_satisfies_triangle_inequality(name, dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y, z = (point(batch, n, k, dtype, gen) for _ in range(3))
    distance = DISTANCES.resolve(name)
    assert bool((distance(x, z) <= distance(x, y) + distance(y, z) + tolerance(dtype, n)).all())


@pytest.mark.parametrize("name", DISTANCES.names())
@given(
    shape=shapes(max_batch=2),
    sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    chunk_size=st.integers(1, 6),
    seed=seeds,
)
def test_cdist_equals_broadcast_per_pair_distances(name, dtype, shape, sizes, chunk_size, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point((*batch, sizes[0]), n, k, dtype, gen)
    y = point((*batch, sizes[1]), n, k, dtype, gen)
    pairwise = cdist(x, y, name, chunk_size=chunk_size)
    expected = DISTANCES.resolve(name)(x.unsqueeze(-3), y.unsqueeze(-4))
    assert pairwise.shape == (*batch, *sizes)
    torch.testing.assert_close(pairwise, expected, atol=tolerance(dtype, n), rtol=0)


def test_cdist_accepts_a_callable():
    gen = generator(0)
    x, y = point((3,), 5, 2, torch.float64, gen), point((4,), 5, 2, torch.float64, gen)
    torch.testing.assert_close(cdist(x, y, DISTANCES.resolve("chordal")), cdist(x, y, "chordal"))


@pytest.mark.parametrize(
    "x_shape, y_shape",
    [((5, 2), (5, 2)), ((3, 5, 2), (4, 6, 2)), ((3, 5, 2), (4, 5, 1))],
    ids=["no set dim", "different n", "different k"],
)
def test_cdist_rejects_mismatched_shapes_quoting_them(x_shape, y_shape):
    with pytest.raises(ShapeError, match=re.escape(f"got {x_shape} and {y_shape}")):
        cdist(torch.zeros(x_shape), torch.zeros(y_shape))


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(max_batch=4), batch_size=st.integers(2, 4), seed=seeds)
def test_distance_batched_equals_per_item(name, dtype, shape, batch_size, seed):
    _, n, k = shape
    gen = generator(seed)
    x, y = point((batch_size,), n, k, dtype, gen), point((batch_size,), n, k, dtype, gen)
    distance = DISTANCES.resolve(name)
    per_item = torch.stack([distance(a, b) for a, b in zip(x, y)])
    torch.testing.assert_close(distance(x, y), per_item, atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(), seed=seeds)
def test_distance_is_the_same_with_and_without_autograd(name, dtype, shape, seed):
    """Entries may run a separate kernel when no gradient is needed; both agree."""
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, dtype, gen), point(batch, n, k, dtype, gen)
    distance = DISTANCES.resolve(name)
    with torch.no_grad():
        without = distance(x, y)
    with_autograd = distance(x.clone().requires_grad_(), y.clone().requires_grad_())
    torch.testing.assert_close(with_autograd.detach(), without, atol=tolerance(dtype, n, factor=100), rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", DISTANCES.names())
def test_distance_preserves_dtype_and_device(name, dtype, device):
    gen = generator(0)
    x, y = point((2, 3), 6, 2, dtype, gen, device), point((3,), 6, 2, dtype, gen, device)
    d = DISTANCES.resolve(name)(x, y)
    assert (d.shape, d.dtype, d.device) == ((2, 3), dtype, x.device)


def test_geodesic_distance_is_grassmann_dist():
    gen = generator(0)
    x, y = point((4,), 7, 3, torch.float64, gen), point((4,), 7, 3, torch.float64, gen)
    torch.testing.assert_close(DISTANCES.resolve("geodesic")(x, y), Grassmann().dist(x, y))


@pytest.mark.parametrize("name", DISTANCES.names())
@given(shape=shapes(max_n=6, max_batch=2, generic=True), seed=seeds)
def test_distance_gradcheck_at_generic_points(name, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, torch.float64, gen), point(batch, n, k, torch.float64, gen)
    assert torch.autograd.gradcheck(DISTANCES.resolve(name), (x.requires_grad_(), y.requires_grad_()))


@pytest.mark.parametrize("where", ["origin", "random point"])
@pytest.mark.parametrize("name", DISTANCES.names())
def test_distance_has_finite_gradients_at_x_equals_y(name, where, dtype):
    gen = generator(0)
    x = Grassmann().origin(5, 2, dtype=dtype) if where == "origin" else point((), 5, 2, dtype, gen)
    x = x.as_subclass(torch.Tensor).detach().requires_grad_()
    y = x.detach().clone().requires_grad_()
    DISTANCES.resolve(name)(x, y).backward()
    assert bool(x.grad.isfinite().all()) and bool(y.grad.isfinite().all())
