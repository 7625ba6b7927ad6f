"""Agreement with geomstats 2.8's Grassmannian through the projector interop.

geomstats represents a point by its projector ``P = x x^T`` and a tangent
vector by ``u x^T + x u^T``; its metric is the Frobenius one on those, so its
inner products are twice ours and its distances ``sqrt 2`` times ours
(``manifolds.interop.GEOMSTATS_METRIC_SCALE``). geomstats computes with n x n
matrix exponentials and logarithms in float64 (NumPy backend): an independent
reference for ``expmap``, ``logmap``, ``dist`` and parallel transport.
"""

from __future__ import annotations

import os

# geomstats picks its backend once, at import; NumPy keeps the reference
# independent of torch. Conversions below work with either backend.
os.environ.setdefault("GEOMSTATS_BACKEND", "numpy")

import geomstats.backend as gs  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from geomstats.geometry.grassmannian import Grassmannian  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from manifolds import (  # noqa: E402
    TRANSPORTS,
    Grassmann,
    expmap,
    from_projector,
    from_scipy,
    logmap,
    to_projector,
    to_scipy,
)
from manifolds.errors import ManifoldTypeError, NonFiniteError, ShapeError  # noqa: E402
from manifolds.interop import (  # noqa: E402
    GEOMSTATS_METRIC_SCALE,
    tangent_from_projector,
    tangent_to_projector,
)
from tests.conftest import generator, tolerance  # noqa: E402
from tests.manifolds.strategies import point, seeds, shapes, tangent  # noqa: E402

GRASSMANN = Grassmann()

# geomstats' log is a matrix logarithm of a rotation by twice the principal
# angles; it is well conditioned while those stay clear of pi.
LOG_RADIUS = 1.2

counts = st.integers(1, 3)


def _to_geomstats(t: torch.Tensor):
    return gs.array(t.detach().double().cpu().numpy())


def _assert_matches_geomstats(actual: torch.Tensor, expected, n: int) -> None:
    expected = torch.tensor(np.array(expected), dtype=actual.dtype)
    torch.testing.assert_close(actual, expected, atol=tolerance(actual.dtype, n, 100), rtol=0)


def _setup(shape, count, seed, dtype, radius):
    _, n, k = shape
    gen = generator(seed)
    x = point((count,), n, k, dtype, gen)
    return Grassmannian(n, k), x, tangent(x, gen, spectral_norm=radius), tangent(x, gen)


@given(shape=shapes(min_codim=1), count=counts, seed=seeds, radius=st.floats(0.0, 3.0))
def test_projectors_are_geomstats_points_and_tangent_vectors(dtype, shape, count, seed, radius):
    space, x, u, _ = _setup(shape, count, seed, dtype, radius)
    projector, velocity = _to_geomstats(to_projector(x)), _to_geomstats(tangent_to_projector(x, u))
    atol = tolerance(dtype, shape[1], 100)
    assert np.all(np.asarray(space.belongs(projector, atol=atol)))
    assert np.all(np.asarray(space.is_tangent(velocity, projector, atol=atol * max(radius, 1.0))))


@given(shape=shapes(min_codim=1), count=counts, seed=seeds, radius=st.floats(0.0, 3.0))
def test_expmap_agrees_with_geomstats_exp(dtype, shape, count, seed, radius):
    space, x, u, _ = _setup(shape, count, seed, dtype, radius)
    expected = space.metric.exp(_to_geomstats(tangent_to_projector(x, u)), _to_geomstats(to_projector(x)))
    _assert_matches_geomstats(to_projector(expmap(x, u)), expected, shape[1])


@given(shape=shapes(min_codim=1), count=counts, seed=seeds, radius=st.floats(0.0, LOG_RADIUS))
def test_logmap_agrees_with_geomstats_log(dtype, shape, count, seed, radius):
    space, x, u, _ = _setup(shape, count, seed, dtype, radius)
    y = expmap(x, u)
    expected = space.metric.log(_to_geomstats(to_projector(y)), _to_geomstats(to_projector(x)))
    _assert_matches_geomstats(tangent_to_projector(x, logmap(x, y)), expected, shape[1])


@given(shape=shapes(min_codim=1), count=counts, seed=seeds, radius=st.floats(0.0, LOG_RADIUS))
def test_dist_is_geomstats_dist_over_sqrt_2(dtype, shape, count, seed, radius):
    space, x, u, _ = _setup(shape, count, seed, dtype, radius)
    y = expmap(x, u)
    expected = space.metric.dist(_to_geomstats(to_projector(x)), _to_geomstats(to_projector(y)))
    _assert_matches_geomstats(GEOMSTATS_METRIC_SCALE * GRASSMANN.dist(x, y), expected, shape[1])


@given(shape=shapes(min_codim=1), count=counts, seed=seeds)
def test_inner_is_half_of_geomstats_inner_product(dtype, shape, count, seed):
    space, x, u, v = _setup(shape, count, seed, dtype, 1.0)
    expected = space.metric.inner_product(
        _to_geomstats(tangent_to_projector(x, u)),
        _to_geomstats(tangent_to_projector(x, v)),
        _to_geomstats(to_projector(x)),
    )
    _assert_matches_geomstats(GEOMSTATS_METRIC_SCALE**2 * GRASSMANN.inner(x, u, v), expected, shape[1])


@given(shape=shapes(min_codim=1), count=counts, seed=seeds, radius=st.floats(0.0, 3.0))
def test_parallel_transport_agrees_with_geomstats(dtype, shape, count, seed, radius):
    space, x, u, v = _setup(shape, count, seed, dtype, radius)
    y = expmap(x, u)
    expected = space.metric.parallel_transport(
        _to_geomstats(tangent_to_projector(x, v)),
        _to_geomstats(to_projector(x)),
        direction=_to_geomstats(tangent_to_projector(x, u)),
    )
    actual = tangent_to_projector(y, TRANSPORTS.resolve("parallel")(x, u, y, v))
    _assert_matches_geomstats(actual, expected, shape[1])


@given(shape=shapes(), seed=seeds)
def test_projector_round_trip_keeps_the_subspace(dtype, shape, seed):
    batch, n, k = shape
    x = point(batch, n, k, dtype, generator(seed))
    projector = to_projector(x)
    back = from_projector(projector, k)
    atol = tolerance(dtype, n, 100)
    torch.testing.assert_close(to_projector(back), projector, atol=atol, rtol=0)
    assert back.dtype == dtype and GRASSMANN.check_point_on_manifold(back, atol=atol)


@given(shape=shapes(), seed=seeds)
def test_tangent_projector_round_trip_keeps_the_vector(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen)
    back = tangent_from_projector(x, tangent_to_projector(x, u))
    torch.testing.assert_close(back, u, atol=tolerance(dtype, n, 100), rtol=0)


@given(shape=shapes(), seed=seeds)
def test_scipy_round_trip_keeps_the_subspace(dtype, shape, seed):
    batch, n, k = shape
    x = point(batch, n, k, dtype, generator(seed))
    array = to_scipy(x)
    assert isinstance(array, np.ndarray) and array.dtype == np.float64
    back = from_scipy(array, dtype=dtype)
    assert back.dtype == dtype
    torch.testing.assert_close(to_projector(back), to_projector(x), atol=tolerance(dtype, n, 100), rtol=0)


@pytest.mark.parametrize("shape, k", [((4, 3), 2), ((4, 4), 0), ((4, 4), 5)], ids=["not square", "k=0", "k>n"])
def test_from_projector_rejects_bad_shapes_quoting_them(shape, k):
    with pytest.raises(ShapeError, match=f"k={k}"):
        from_projector(torch.zeros(shape), k)


def _bad_tangent_calls():
    x = point((), 5, 2, torch.float64, generator(3))
    u, dp = torch.zeros(5, 2, dtype=torch.float64), torch.zeros(5, 5, dtype=torch.float64)
    nan_u, nan_dp = u.clone(), dp.clone()
    nan_u[0, 0] = nan_dp[0, 0] = float("nan")
    return {
        "to: u shape": (tangent_to_projector, (x, u[:, :1]), ShapeError, r"\(5, 2\) and \(5, 1\)"),
        "to: k>n": (tangent_to_projector, (x.mT, u.mT), ShapeError, "k=5, n=2"),
        "to: int": (tangent_to_projector, (x, u.long()), ManifoldTypeError, "got torch.int64"),
        "to: nan": (tangent_to_projector, (x, nan_u), NonFiniteError, "u holds NaN"),
        "from: dp shape": (tangent_from_projector, (x, dp[:4, :4]), ShapeError, r"n=5.*got \(4, 4\)"),
        "from: dtype": (tangent_from_projector, (x, dp.float()), ManifoldTypeError, "share dtype"),
        "from: nan": (tangent_from_projector, (x, nan_dp), NonFiniteError, "dp holds NaN"),
    }


@pytest.mark.parametrize("case", sorted(_bad_tangent_calls()))
def test_tangent_projector_helpers_refuse_bad_input(case):
    fn, args, error, message = _bad_tangent_calls()[case]
    with pytest.raises(error, match=message):
        fn(*args)
