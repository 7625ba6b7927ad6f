"""Contract tests run over every entry of ``manifolds.RETRACTIONS``.

A retraction registered later is picked up by the parametrization and must
pass the same contract: it lands on the manifold, ``R(x, 0) = x`` as a matrix,
it agrees with the exponential map to at least first order (the documented
order for the built-in entries, measured by the log-log slope of the error over
step sizes), it is batched, keeps dtype, device and row layout, and is
differentiable.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import RETRACTIONS, Grassmann, expmap
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import DEVICES, as_rows, point, seeds, shapes, tangent

# Order of agreement with exp (1 = error O(t^2)); math.inf = is exp. Entries
# not listed must be at least first order.
MATRIX_ORDER = {"qr": 1, "polar": 2, "cayley": 2, "exp": math.inf, "newton_schulz": 2}
SUBSPACE_ORDER = {"qr": 2, "polar": 2, "cayley": 2, "exp": math.inf, "newton_schulz": 2}

# Step sizes for the slope fits: small enough for the Taylor term to dominate,
# large enough for a third-order error to stay far above rounding.
STEPS = {
    torch.float64: np.geomspace(1e-3, 1e-1, 5),
    torch.float32: np.geomspace(5e-2, 4e-1, 5),
}
SLOPE_SLACK = 0.3

GRASSMANN = Grassmann()


def _names_with(table, exact):
    return [name for name in RETRACTIONS.names() if math.isinf(table.get(name, 1)) == exact]


def _error_slope(errors, dtype):
    """Slope of log(error) over log(step)."""
    return np.polyfit(np.log(STEPS[dtype]), np.log(np.asarray(errors)), 1)[0]


@pytest.mark.parametrize("name", RETRACTIONS.names())
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 3.0))
def test_retraction_keeps_orthonormal_columns(name, dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    y = RETRACTIONS.resolve(name)(x, u)
    eye = torch.eye(k, dtype=dtype)
    torch.testing.assert_close(y.mT @ y, eye.expand_as(y.mT @ y), atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", RETRACTIONS.names())
@given(shape=shapes(), seed=seeds)
def test_retraction_of_zero_step_is_the_same_matrix(name, dtype, shape, seed):
    batch, n, k = shape
    x = point(batch, n, k, dtype, generator(seed))
    y = RETRACTIONS.resolve(name)(x, torch.zeros_like(x))
    torch.testing.assert_close(y, x, atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", _names_with(MATRIX_ORDER, exact=False))
@given(shape=shapes(max_batch=1, min_codim=1), seed=seeds)
def test_retraction_agrees_with_exp_to_its_order_as_matrices(name, dtype, shape, seed):
    _, n, k = shape
    gen = generator(seed)
    x = point((), n, k, dtype, gen)
    u = tangent(x, gen)
    u = u / torch.linalg.matrix_norm(u)
    retraction = RETRACTIONS.resolve(name)
    errors = [torch.linalg.matrix_norm(retraction(x, t * u) - expmap(x, t * u)).item() for t in STEPS[dtype]]
    assert _error_slope(errors, dtype) >= MATRIX_ORDER.get(name, 1) + 1 - SLOPE_SLACK


@pytest.mark.parametrize("name", _names_with(SUBSPACE_ORDER, exact=False))
@given(shape=shapes(max_batch=1, min_codim=1), seed=seeds)
def test_retraction_agrees_with_exp_to_its_order_as_subspaces(name, dtype, shape, seed):
    _, n, k = shape
    gen = generator(seed)
    x = point((), n, k, dtype, gen)
    u = tangent(x, gen)
    u = u / torch.linalg.matrix_norm(u)
    retraction = RETRACTIONS.resolve(name)
    errors = [GRASSMANN.dist(retraction(x, t * u), expmap(x, t * u)).item() for t in STEPS[dtype]]
    assert _error_slope(errors, dtype) >= SUBSPACE_ORDER.get(name, 1) + 1 - SLOPE_SLACK


@pytest.mark.parametrize("name", _names_with(MATRIX_ORDER, exact=True))
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 3.0))
def test_exact_retraction_is_the_exponential_map(name, dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    y = RETRACTIONS.resolve(name)(x, u)
    torch.testing.assert_close(y, expmap(x, u), atol=tolerance(dtype, n), rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds, huge=st.floats(1e5, 1e7))
def test_qr_kernel_equals_qr_also_where_it_falls_back(dtype, shape, seed, huge):
    """Item 0 takes a tame step, item 1 one whose Gram matrix forces the Householder fallback."""
    _, n, k = shape
    gen = generator(seed)
    x = point((2,), n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=1.0)
    u[1, :, 0] *= huge / torch.linalg.vector_norm(u[1, :, 0])
    kernel = Grassmann("qr").retr_(x.clone(), u)
    torch.testing.assert_close(kernel, RETRACTIONS.resolve("qr")(x, u), atol=tolerance(dtype, n, factor=100), rtol=0)


def test_retired_cholesky_qr_name_resolves_to_qr_with_a_warning():
    with pytest.warns(FutureWarning, match="retired name for 'qr'"):
        assert RETRACTIONS.resolve("cholesky_qr") is RETRACTIONS.resolve("qr")
    assert "cholesky_qr" in RETRACTIONS and "cholesky_qr" not in RETRACTIONS.names()


@pytest.mark.parametrize("name", RETRACTIONS.names())
@given(shape=shapes(max_batch=4), batch_size=st.integers(2, 4), seed=seeds)
def test_retraction_batched_equals_per_item(name, dtype, shape, batch_size, seed):
    _, n, k = shape
    gen = generator(seed)
    x = point((batch_size,), n, k, dtype, gen)
    u = tangent(x, gen)
    retraction = RETRACTIONS.resolve(name)
    per_item = torch.stack([retraction(x[i], u[i]) for i in range(batch_size)])
    torch.testing.assert_close(retraction(x, u), per_item, atol=tolerance(dtype, n), rtol=0)


@pytest.mark.parametrize("name", RETRACTIONS.names())
@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 3.0))
def test_retraction_is_the_same_with_and_without_autograd(name, dtype, shape, seed, radius):
    """Entries may run a separate kernel when no gradient is needed; both agree."""
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    retraction = RETRACTIONS.resolve(name)
    with torch.no_grad():
        without = retraction(x, u)
    with_autograd = retraction(x.clone().requires_grad_(), u.clone().requires_grad_())
    torch.testing.assert_close(with_autograd.detach(), without, atol=tolerance(dtype, n, factor=100), rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", RETRACTIONS.names())
def test_retraction_preserves_dtype_device_and_row_layout(name, dtype, device):
    gen = generator(0)
    x = point((3,), 7, 2, dtype, gen, device)
    u = as_rows(tangent(x, gen))
    y = RETRACTIONS.resolve(name)(x, u)
    assert (y.shape, y.dtype, y.device) == (x.shape, dtype, x.device)
    assert y.mT.is_contiguous()


@pytest.mark.parametrize("name", RETRACTIONS.names())
@given(shape=shapes(max_n=6, max_batch=2, generic=True), seed=seeds)
def test_retraction_gradcheck_at_generic_points(name, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, torch.float64, gen)
    u = tangent(x, gen, spectral_norm=0.8)
    inputs = (x.requires_grad_(), u.requires_grad_())
    assert torch.autograd.gradcheck(RETRACTIONS.resolve(name), inputs)


@pytest.mark.parametrize("name", RETRACTIONS.names())
def test_retraction_gradient_at_zero_step_is_finite_and_the_identity_on_horizontal_vectors(name, dtype):
    """``dR_x(0) = id`` on the horizontal space, and autograd computes it at ``u = 0``,
    where a parametrisation ``y = R(x0, u)`` starts."""
    gen = generator(0)
    x = point((2,), 6, 2, dtype, gen).requires_grad_()
    u = torch.zeros_like(x, requires_grad=True)
    weights = torch.randn(x.shape, dtype=dtype, generator=gen)
    (RETRACTIONS.resolve(name)(x, u) * weights).sum().backward()
    assert bool(x.grad.isfinite().all()) and bool(u.grad.isfinite().all())
    base = x.detach()
    horizontal = GRASSMANN.proju(base, u.grad)
    torch.testing.assert_close(horizontal, GRASSMANN.proju(base, weights), atol=tolerance(dtype, 6), rtol=0)
