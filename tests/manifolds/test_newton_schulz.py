"""``newton_schulz`` computes the map of ``polar`` (Newton-Schulz iterations instead of ``eigh``), to rounding.

The contract tests of ``test_retractions`` hold it to what every retraction
promises; these hold it to ``polar``: tightly in float64, to float32's
resolution in float32, and to bfloat16's resolution (stated bounds below)
in bfloat16, including the steps beyond the iteration's reach, which take
``polar``'s route.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import RETRACTIONS
from manifolds.retractions import _newton_schulz_iterations
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import point, seeds, shapes, tangent

NEWTON_SCHULZ, POLAR = RETRACTIONS.resolve("newton_schulz"), RETRACTIONS.resolve("polar")


def test_registry_records_newton_schulz_as_the_map_of_polar():
    assert RETRACTIONS.map_of("newton_schulz") == "polar"
    assert [name for name in RETRACTIONS.names() if RETRACTIONS.map_of(name) != name] == ["newton_schulz"]


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, 3.0))
def test_newton_schulz_equals_polar_to_rounding(dtype, shape, seed, radius):
    """Radii up to 3 cover both routes: iterations (``||u||_2 <~ 0.7``) and ``polar``'s beyond."""
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    torch.testing.assert_close(NEWTON_SCHULZ(x, u), POLAR(x, u), atol=tolerance(dtype, n, factor=20), rtol=0)


@pytest.mark.parametrize("radius", [0.0, 1e-3, 0.05, 0.3, 0.6, 2.0])
def test_newton_schulz_in_bfloat16_equals_polar_to_bfloat16_resolution(radius):
    """bf16 inputs, compared with ``polar`` of the same (rounded) inputs in float64.

    Bound: 4 bf16 epsilons (3.1e-2) on every entry, and orthonormality within the same.
    """
    gen = generator(3)
    x = point((6,), 40, 4, torch.float64, gen)
    u = tangent(x, gen, spectral_norm=radius)
    xb, ub = x.to(torch.bfloat16), u.to(torch.bfloat16)
    y = NEWTON_SCHULZ(xb, ub)
    assert y.dtype == torch.bfloat16
    bound = 4 * torch.finfo(torch.bfloat16).eps
    torch.testing.assert_close(y.double(), POLAR(xb.double(), ub.double()), atol=bound, rtol=0)
    yd = y.double()
    assert float((yd.mT @ yd - torch.eye(4, dtype=torch.float64)).abs().amax()) <= bound


def test_newton_schulz_mixes_both_routes_in_one_stack(dtype):
    gen = generator(1)
    x = point((3,), 12, 3, dtype, gen)
    u = tangent(x, gen, spectral_norm=0.2)
    u[1] *= 50.0  # beyond the iterations' reach: polar's route for this item only
    y = NEWTON_SCHULZ(x, u)
    torch.testing.assert_close(y, POLAR(x, u), atol=tolerance(dtype, 12, factor=20), rtol=0)
    assert y.mT.is_contiguous()


def test_newton_schulz_gradient_is_finite_when_an_item_takes_polars_route():
    gen = generator(2)
    x = point((2,), 8, 2, torch.float64, gen)
    u = tangent(x, gen, spectral_norm=0.3)
    u[0] *= 1e4
    u.requires_grad_()
    NEWTON_SCHULZ(x, u).square().sum().backward()
    assert bool(u.grad.isfinite().all())


@pytest.mark.parametrize(("dtype", "most"), [(torch.float64, 6), (torch.float32, 5), (torch.bfloat16, 3)])
def test_iteration_count_is_bounded_by_dtype_and_reaches_working_precision(dtype, most):
    counts = [_newton_schulz_iterations(reach, dtype) for reach in (0.0, 1e-8, 1e-4, 1e-2, 0.1, 0.5)]
    assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == most


def test_a_small_step_needs_few_iterations_in_float64():
    """What training steps cost: ||u||_2 = 1e-2 gives reach ~1e-4, two iterations."""
    assert _newton_schulz_iterations(1e-4, torch.float64) == 2
