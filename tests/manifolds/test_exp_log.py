"""The exponential and logarithm maps: inverse pair, distance, cut locus."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from manifolds import Grassmann, expmap, logmap
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import (
    DEVICES,
    as_rows,
    orthogonal,
    point,
    seeds,
    shapes,
    tangent,
    tangent_with_singular_values,
)

GRASSMANN = Grassmann()

# Steps up to this spectral norm stay inside the injectivity radius (pi/2 per
# principal angle) with a margin that keeps logmap well conditioned.
INSIDE = 1.5


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, INSIDE))
def test_logmap_inverts_expmap_inside_injectivity_radius(dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    torch.testing.assert_close(logmap(x, expmap(x, u)), u, atol=tolerance(dtype, n, factor=100), rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, INSIDE))
def test_logmap_does_not_depend_on_the_basis_of_y(dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    y_rotated = expmap(x, u) @ orthogonal(batch, k, dtype, gen)
    torch.testing.assert_close(logmap(x, y_rotated), u, atol=tolerance(dtype, n, factor=100), rtol=0)


@given(shape=shapes(min_codim=1), seed=seeds, radius=st.floats(0.0, math.pi / 2))
def test_distance_to_expmap_equals_step_norm(dtype, shape, seed, radius):
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=radius)
    distance = GRASSMANN.dist(x, expmap(x, u))
    torch.testing.assert_close(distance, GRASSMANN.norm(x, u), atol=tolerance(dtype, n), rtol=0)


# dtype -> (scale of the step, relative tolerance), as for the principal angles.
TINY_STEPS = {torch.float64: (1e-7, 1e-6), torch.float32: (1e-4, 1e-3)}


@given(shape=shapes(min_codim=1), seed=seeds)
def test_distance_to_expmap_is_relatively_accurate_for_tiny_steps(dtype, shape, seed):
    batch, n, k = shape
    scale, rtol = TINY_STEPS[dtype]
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    u = tangent(x, gen, spectral_norm=scale)
    distance = GRASSMANN.dist(x, expmap(x, u))
    torch.testing.assert_close(distance, GRASSMANN.norm(x, u), atol=0, rtol=rtol)


@given(shape=shapes(), seed=seeds)
def test_logmap_is_horizontal_with_norm_equal_to_distance(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, dtype, gen), point(batch, n, k, dtype, gen)
    u = logmap(x, y)
    atol = tolerance(dtype, n, factor=100)
    torch.testing.assert_close(x.mT @ u, torch.zeros_like(x.mT @ u), atol=atol, rtol=0)
    torch.testing.assert_close(GRASSMANN.norm(x, u), GRASSMANN.dist(x, y), atol=atol, rtol=0)


@given(shape=shapes(), seed=seeds)
def test_expmap_of_logmap_spans_y(dtype, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y = point(batch, n, k, dtype, gen), point(batch, n, k, dtype, gen)
    distance = GRASSMANN.dist(expmap(x, logmap(x, y)), y)
    atol = tolerance(dtype, n, factor=100)
    torch.testing.assert_close(distance, torch.zeros_like(distance), atol=atol, rtol=0)


@given(shape=shapes(generic=True), seed=seeds, right_angles=st.integers(1, 6))
def test_logmap_at_cut_locus_returns_a_minimising_vector(dtype, shape, seed, right_angles):
    """Some principal angles equal pi/2: log is not unique; the documented choice
    still has norm equal to the distance and exp of it spans ``y``."""
    batch, n, k = shape
    gen = generator(seed)
    x = point(batch, n, k, dtype, gen)
    values = torch.rand(*batch, k, dtype=dtype, generator=gen)
    values[..., : min(right_angles, k)] = math.pi / 2
    y = expmap(x, tangent_with_singular_values(x, values, gen))
    u = logmap(x, y)
    atol = tolerance(dtype, n, factor=100)
    length = torch.linalg.vector_norm(values, dim=-1)
    torch.testing.assert_close(GRASSMANN.norm(x, u), length, atol=atol, rtol=0)
    distance = GRASSMANN.dist(expmap(x, u), y)
    torch.testing.assert_close(distance, torch.zeros_like(distance), atol=atol, rtol=0)


def test_logmap_between_orthogonal_lines_has_length_pi_over_2(dtype):
    x = torch.tensor([[1.0], [0.0]], dtype=dtype)
    y = torch.tensor([[0.0], [1.0]], dtype=dtype)
    u = logmap(x, y)
    torch.testing.assert_close(u.abs(), torch.tensor([[0.0], [math.pi / 2]], dtype=dtype))


@given(shape=shapes(max_batch=4), batch_size=st.integers(2, 4), seed=seeds)
def test_expmap_and_logmap_batched_equal_per_item(dtype, shape, batch_size, seed):
    _, n, k = shape
    gen = generator(seed)
    x, y = point((batch_size,), n, k, dtype, gen), point((batch_size,), n, k, dtype, gen)
    u = tangent(x, gen)
    atol = tolerance(dtype, n)
    exp_per_item = torch.stack([expmap(a, b) for a, b in zip(x, u)])
    log_per_item = torch.stack([logmap(a, b) for a, b in zip(x, y)])
    torch.testing.assert_close(expmap(x, u), exp_per_item, atol=atol, rtol=0)
    torch.testing.assert_close(logmap(x, y), log_per_item, atol=atol, rtol=0)


MAPS = {"expmap": lambda x, y, u: expmap(x, u), "logmap": lambda x, y, u: logmap(x, y)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("operation", MAPS)
def test_map_preserves_dtype_device_and_row_layout(operation, dtype, device):
    gen = generator(0)
    x, y = point((2, 3), 6, 2, dtype, gen, device), point((2, 3), 6, 2, dtype, gen, device)
    result = MAPS[operation](x, y, as_rows(tangent(x, gen)))
    assert (result.shape, result.dtype, result.device) == (x.shape, dtype, x.device)
    assert result.mT.is_contiguous()
