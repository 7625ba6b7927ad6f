"""Contract tests run over every entry of ``manifolds.TRANSPORTS``.

Every transport maps horizontal vectors at ``x`` linearly to horizontal
vectors at ``y``, is the identity for a zero step, is batched and keeps dtype,
device and row layout. ``parallel`` is also checked against its definition: it
is an isometry, it carries the geodesic's velocity, and it composes along the
geodesic. Entries in ``BASIS_INDEPENDENT`` return ``w Q`` when ``y`` is
replaced by ``y Q``.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import RETRACTIONS, TRANSPORTS, Grassmann, expmap
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import DEVICES, as_rows, orthogonal, point, seeds, shapes, tangent

BASIS_INDEPENDENT = ("aligned_projection", "parallel")

GRASSMANN = Grassmann()

# Steps up to this spectral norm stay well inside the injectivity radius, so
# that logmap (used by parallel when u is omitted) is well conditioned.
INSIDE = 1.4


@pytest.mark.parametrize("retraction", RETRACTIONS.names())
@pytest.mark.parametrize("name", TRANSPORTS.names())
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 3.0))
def test_transport_returns_horizontal_vectors_at_y(name, retraction, dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u, v = tangent(x, gen, spectral_norm=radius), tangent(x, gen)
    y = RETRACTIONS.resolve(retraction)(x, u)
    w = TRANSPORTS.resolve(name)(x, u, y, v)
    atol = tolerance(dtype, n, factor=100)
    torch.testing.assert_close(y.mT @ w, torch.zeros_like(y.mT @ w), atol=atol, rtol=0)


@pytest.mark.parametrize("name", TRANSPORTS.names())
@given(shape=shapes(), seed=seeds)
def test_transport_along_zero_step_is_the_identity(name, dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    v = tangent(x, gen)
    w = TRANSPORTS.resolve(name)(x, torch.zeros_like(x), x, v)
    torch.testing.assert_close(w, v, atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", TRANSPORTS.names())
@given(shape=shapes(min_codim=1), seed=seeds, a=st.floats(-2, 2), b=st.floats(-2, 2))
def test_transport_is_linear_in_the_vector(name, dtype, shape, seed, a, b):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u, v1, v2 = tangent(x, gen, spectral_norm=1.0), tangent(x, gen), tangent(x, gen)
    y = expmap(x, u)
    transport = TRANSPORTS.resolve(name)
    expected = a * transport(x, u, y, v1) + b * transport(x, u, y, v2)
    actual = transport(x, u, y, a * v1 + b * v2)
    torch.testing.assert_close(actual, expected, atol=tolerance(dtype, n, 100), rtol=0)


@pytest.mark.parametrize("name", BASIS_INDEPENDENT)
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, INSIDE))
def test_transport_does_not_depend_on_the_basis_of_y(name, dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u, v = tangent(x, gen, spectral_norm=radius), tangent(x, gen)
    y = expmap(x, u)
    q = orthogonal(batch, k, dtype, gen)
    transport = TRANSPORTS.resolve(name)
    torch.testing.assert_close(
        transport(x, u, y @ q, v), transport(x, u, y, v) @ q, atol=tolerance(dtype, n, 100), rtol=0
    )


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 3.0))
def test_parallel_transport_preserves_inner_products(dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    v1, v2 = tangent(x, gen, spectral_norm=1.0), tangent(x, gen, spectral_norm=1.0)
    y = expmap(x, u) @ orthogonal(batch, k, dtype, gen)
    parallel = TRANSPORTS.resolve("parallel")
    w1, w2 = parallel(x, u, y, v1), parallel(x, u, y, v2)
    atol = tolerance(dtype, n, factor=100)
    torch.testing.assert_close(GRASSMANN.inner(y, w1, w2), GRASSMANN.inner(x, v1, v2), atol=atol, rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.05, 3.0))
def test_parallel_transport_of_the_step_is_the_geodesic_velocity(dtype, shape, seed, radius):
    """``tau(u) = d/dt exp_x(t u)`` at ``t = 1``, by a five-point stencil.

    The stencil with ``h = eps^(1/5)`` is accurate to about ``eps^(4/5)``.
    """
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    eps = torch.finfo(dtype).eps
    h = eps**0.2
    f = [expmap(x, (1 + j * h) * u) for j in (-2, -1, 1, 2)]
    velocity = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h)
    transported = TRANSPORTS.resolve("parallel")(x, u, expmap(x, u), u)
    atol = tolerance(dtype, n, factor=10 * eps**-0.2) * max(radius, 1.0) ** 5
    torch.testing.assert_close(transported, velocity, atol=atol, rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds, s=st.floats(0.0, 1.5), t=st.floats(0.0, 1.5))
def test_parallel_transport_composes_along_the_geodesic(dtype, shape, seed, s, t):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u, v = tangent(x, gen, spectral_norm=1.0), tangent(x, gen)
    parallel = TRANSPORTS.resolve("parallel")
    middle, end = expmap(x, s * u), expmap(x, (s + t) * u)
    u_middle = parallel(x, s * u, middle, u)
    two_legs = parallel(middle, t * u_middle, end, parallel(x, s * u, middle, v))
    one_leg = parallel(x, (s + t) * u, end, v)
    torch.testing.assert_close(two_legs, one_leg, atol=tolerance(dtype, n, factor=100), rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, INSIDE))
def test_parallel_transport_recovers_an_omitted_step_by_logmap(dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u, v = tangent(x, gen, spectral_norm=radius), tangent(x, gen)
    y = expmap(x, u) @ orthogonal(batch, k, dtype, gen)
    parallel = TRANSPORTS.resolve("parallel")
    recovered = parallel(x, None, y, v)
    torch.testing.assert_close(recovered, parallel(x, u, y, v), atol=tolerance(dtype, n, 100), rtol=0)


@pytest.mark.parametrize("name", TRANSPORTS.names())
@given(shape=shapes(max_batch=4, min_codim=1), batch_size=st.integers(2, 4), seed=seeds)
def test_transport_batched_equals_per_item(name, dtype, shape, batch_size, seed):
    _, n, k = shape
    gen = generator(seed)
    x = point((batch_size,), n, k, dtype, gen)
    u, v = tangent(x, gen, spectral_norm=1.0), tangent(x, gen)
    y = expmap(x, u)
    transport = TRANSPORTS.resolve(name)
    per_item = torch.stack([transport(*items) for items in zip(x, u, y, v)])
    torch.testing.assert_close(transport(x, u, y, v), per_item, atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", TRANSPORTS.names())
def test_transport_preserves_dtype_device_and_row_layout(name, dtype, device):
    gen = generator(0)
    x = point((2, 3), 7, 2, dtype, gen, device)
    u, v = as_rows(tangent(x, gen, spectral_norm=1.0)), as_rows(tangent(x, gen))
    w = TRANSPORTS.resolve(name)(x, u, expmap(x, u), v)
    assert (w.shape, w.dtype, w.device) == (x.shape, dtype, x.device)
    assert w.mT.is_contiguous()
