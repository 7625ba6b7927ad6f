"""``manifolds.Grassmann`` as a ``geoopt.Manifold``: projections, metric,
sampling, checks and the wiring of the configured retraction and transport."""

from __future__ import annotations

import re

import geoopt
import pytest
import torch
from hypothesis import given

from manifolds import DISTANCES, RETRACTIONS, TRANSPORTS, Grassmann, expmap
from manifolds.errors import ShapeError
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import DEVICES, as_rows, orthogonal, point, seeds, shapes, tangent

GRASSMANN = Grassmann()


@given(shape=shapes(), seed=seeds)
def test_proju_is_the_horizontal_projection(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    ambient = torch.randn(x.shape, dtype=dtype, generator=gen)
    u = GRASSMANN.proju(x, ambient)
    atol = tolerance(dtype, n, factor=100)
    torch.testing.assert_close(x.mT @ u, torch.zeros_like(x.mT @ u), atol=atol, rtol=0)
    torch.testing.assert_close(GRASSMANN.proju(x, u), u, atol=atol, rtol=0)
    torch.testing.assert_close(GRASSMANN.egrad2rgrad(x, ambient), u)


@given(shape=shapes(), seed=seeds)
def test_projx_returns_an_orthonormal_basis_of_the_same_span(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    z = torch.randn(*batch, n, k, dtype=dtype, generator=gen)
    x = GRASSMANN.projx(z)
    assert GRASSMANN.check_point_on_manifold(x, atol=tolerance(dtype, n))
    residual = z - x @ (x.mT @ z)
    atol = tolerance(dtype, n, 100) * z.abs().max()
    torch.testing.assert_close(residual, torch.zeros_like(z), atol=atol, rtol=0)


@given(shape=shapes(), seed=seeds)
def test_projx_keeps_an_orthonormal_basis_unchanged(dtype, shape, seed):
    """Sign-fixed QR: ``projx(x) = x`` as a matrix, for any orthonormal ``x``."""
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen) @ orthogonal(batch, k, dtype, gen)
    torch.testing.assert_close(GRASSMANN.projx(x), x, atol=tolerance(dtype, n), rtol=0)


@given(shape=shapes(), seed=seeds)
def test_inner_is_the_trace_inner_product_and_norm_its_square_root(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u, v = tangent(x, gen), tangent(x, gen)
    atol = tolerance(dtype, n)
    trace = torch.einsum("...ij,...ij->...", u, v)
    torch.testing.assert_close(GRASSMANN.inner(x, u, v), trace, atol=atol, rtol=0)
    torch.testing.assert_close(GRASSMANN.inner(x, u), GRASSMANN.norm(x, u).square(), atol=atol, rtol=atol)
    assert GRASSMANN.inner(x, u, v, keepdim=True).shape == (*batch, 1, 1)
    assert GRASSMANN.norm(x, u, keepdim=True).shape == (*batch, 1, 1)


@given(shape=shapes(), seed=seeds)
def test_dist_is_the_geodesic_distance_and_dist2_its_square(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, dtype, gen), point(batch, n, k, dtype, gen)
    d = GRASSMANN.dist(x, y)
    torch.testing.assert_close(d, DISTANCES.resolve("geodesic")(x, y), atol=tolerance(dtype, n), rtol=0)
    torch.testing.assert_close(GRASSMANN.dist2(x, y), d.square(), atol=tolerance(dtype, n), rtol=0)
    assert GRASSMANN.dist(x, y, keepdim=True).shape == (*batch, 1, 1)


@pytest.mark.parametrize("device", DEVICES)
@given(shape=shapes(), seed=seeds)
def test_random_gives_orthonormal_bases_stored_as_rows(device, dtype, shape, seed):
    batch, n, k = shape
    x = GRASSMANN.random(*batch, n, k, dtype=dtype, device=device, generator=generator(seed, device))
    assert isinstance(x, geoopt.ManifoldTensor) and x.manifold is GRASSMANN
    assert (x.shape, x.dtype, x.device.type) == ((*batch, n, k), dtype, device)
    assert x.mT.is_contiguous()
    assert GRASSMANN.check_point_on_manifold(x, atol=tolerance(dtype, n))


def test_random_is_reproducible_from_a_generator():
    first = GRASSMANN.random(3, 6, 2, generator=generator(7))
    torch.testing.assert_close(GRASSMANN.random((3, 6, 2), generator=generator(7)), first, atol=0, rtol=0)


SAMPLES = 4000


@pytest.mark.parametrize("n, k", [(2, 1), (4, 2), (6, 2), (7, 5)])
def test_random_is_uniform(n, k):
    """Haar measure: the mean projector is ``(k/n) I`` and, since the QR is
    sign-fixed (Haar on the Stiefel manifold, Mezzadri 2007), the mean basis is 0.
    Entries of both have variance below 1/2, hence the 6-sigma bound."""
    x = GRASSMANN.random(SAMPLES, n, k, dtype=torch.float64, generator=generator(0))
    bound = 6 * (0.5 / SAMPLES) ** 0.5
    mean_projector = (x @ x.mT).mean(0)
    torch.testing.assert_close(mean_projector, torch.eye(n, dtype=torch.float64) * k / n, atol=bound, rtol=0)
    torch.testing.assert_close(x.mean(0), torch.zeros(n, k, dtype=torch.float64), atol=bound, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@given(shape=shapes())
def test_origin_is_the_first_columns_of_the_identity(device, dtype, shape):
    batch, n, k = shape
    x = GRASSMANN.origin(*batch, n, k, dtype=dtype, device=device)
    assert isinstance(x, geoopt.ManifoldTensor) and x.mT.is_contiguous()
    assert (x.dtype, x.device.type) == (dtype, device)
    expected = torch.eye(n, k, dtype=dtype, device=device).expand(*batch, n, k)
    torch.testing.assert_close(x.as_subclass(torch.Tensor), expected, atol=0, rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds)
def test_random_tangent_is_horizontal_and_stored_as_rows(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = GRASSMANN.random_tangent(x, generator=gen)
    assert u.mT.is_contiguous()
    assert GRASSMANN.check_vector_on_tangent(x, u, atol=tolerance(dtype, n, 100))


BAD_POINTS = {
    "not orthonormal": (lambda x: 2 * x, "x^T x"),
    "more columns than rows": (lambda x: torch.zeros(3, 4), "1 <= k <= n"),
    "a vector": (lambda x: torch.zeros(4), "(..., n, k)"),
    "integer dtype": (lambda x: torch.zeros(4, 2, dtype=torch.int64), "floating"),
}


def test_check_point_on_manifold_explains_success():
    x = point((2,), 5, 2, torch.float64, generator(0))
    assert GRASSMANN.check_point_on_manifold(x, explain=True) == (True, None)
    GRASSMANN.assert_check_point_on_manifold(x)


@pytest.mark.parametrize("case", BAD_POINTS)
def test_check_point_on_manifold_rejects_with_a_reason(case):
    make, reason = BAD_POINTS[case]
    x = make(point((), 5, 2, torch.float64, generator(0)))
    ok, explanation = GRASSMANN.check_point_on_manifold(x, explain=True)
    assert not ok and reason in explanation
    with pytest.raises(ValueError, match=re.escape(reason)):
        GRASSMANN.assert_check_point_on_manifold(x)


BAD_VECTORS = {
    "not horizontal": (lambda x, u: x, "x^T u"),
    "wrong shape": (lambda x, u: u[..., :1], "shape"),
}


def test_check_vector_on_tangent_explains_success():
    gen = generator(0)
    x = point((2,), 5, 2, torch.float64, gen)
    assert GRASSMANN.check_vector_on_tangent(x, tangent(x, gen), explain=True) == (True, None)


@pytest.mark.parametrize("case", BAD_VECTORS)
def test_check_vector_on_tangent_rejects_with_a_reason(case):
    gen = generator(0)
    x = point((), 5, 2, torch.float64, gen)
    make, reason = BAD_VECTORS[case]
    ok, explanation = GRASSMANN.check_vector_on_tangent(x, make(x, tangent(x, gen)), explain=True)
    assert not ok and reason in explanation
    with pytest.raises(ValueError):
        GRASSMANN.assert_check_vector_on_tangent(x, make(x, tangent(x, gen)))


@pytest.mark.parametrize(
    "method, size, quoted",
    [
        ("random", (3, 5), "n=3, k=5"),
        ("random", (2, 4, 0), "n=4, k=0"),
        ("origin", (2, 3), "n=2, k=3"),
        ("random", (4,), "(4,)"),
    ],
)
def test_bad_sizes_raise_shape_error_quoting_them(method, size, quoted):
    with pytest.raises(ShapeError) as error:
        getattr(GRASSMANN, method)(*size)
    assert quoted in str(error.value)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("transport", TRANSPORTS.names())
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_configured_retraction_and_transport_are_used(retraction, transport):
    gen = generator(0)
    manifold = Grassmann(retraction=retraction, transport=transport)
    x = point((2,), 6, 2, torch.float64, gen)
    u, v = tangent(x, gen), tangent(x, gen)
    y_expected = RETRACTIONS.resolve(retraction)(x, u)
    w_expected = TRANSPORTS.resolve(transport)(x, u, y_expected, v)
    y, w = manifold.retr_transp(x, u, v)
    torch.testing.assert_close(manifold.retr(x, u), y_expected)
    torch.testing.assert_close(y, y_expected)
    torch.testing.assert_close(w, w_expected)
    torch.testing.assert_close(manifold.transp(x, y, v, u=u), w_expected)
    assert f"retraction={retraction}, transport={transport}" in repr(manifold)


def test_expmap_is_the_exponential_whatever_the_retraction():
    gen = generator(0)
    x = point((2,), 6, 2, torch.float64, gen)
    u = tangent(x, gen)
    torch.testing.assert_close(Grassmann(retraction="qr").expmap(x, u), expmap(x, u))


def test_parallel_transport_without_a_step_uses_logmap():
    gen = generator(0)
    manifold = Grassmann(transport="parallel")
    x = point((2,), 6, 2, torch.float64, gen)
    u, v = tangent(x, gen, spectral_norm=1.0), tangent(x, gen)
    y = manifold.expmap(x, u)
    torch.testing.assert_close(manifold.transp(x, y, v), manifold.transp(x, y, v, u=u))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["proju", "egrad2rgrad"])
def test_projection_preserves_dtype_device_and_row_layout(method, dtype, device):
    gen = generator(0)
    x = point((2, 3), 6, 2, dtype, gen, device)
    u = getattr(GRASSMANN, method)(x, as_rows(torch.randn(x.shape, dtype=dtype, generator=gen).to(device)))
    assert (u.shape, u.dtype, u.device) == (x.shape, dtype, x.device)
    assert u.mT.is_contiguous()
