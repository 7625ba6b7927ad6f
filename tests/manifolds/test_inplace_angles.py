"""``manifolds.inplace.principal_angles``, the chunked float64 angle kernel, held to ``manifolds.principal_angles``.

The differentiable :func:`manifolds.principal_angles` is the definition; the
kernel must give its angles in float64 (to ``100 n eps``), on any stack size
and layout, for tiny and near-pi/2 angles, and agree with scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given

from manifolds import _fused, expmap, inplace, principal_angles, to_scipy
from manifolds.errors import ManifoldTypeError, NonFiniteError, ShapeError
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import DEVICES, as_rows, point, seeds, shapes, tangent_with_singular_values

# singular values of the step from x to y, i.e. the principal angles (ascending)
ANGLES = {
    "tiny": [1e-10, 1e-9, 3e-8],
    "tiny_and_wide": [1e-7, 0.3, 1.2],
    "near_right_angle": [0.5, math.pi / 2 - 1e-3, math.pi / 2 - 1e-8],
    "right_angle": [0.0, 0.7, math.pi / 2],
}


def _pair_with_angles(angles, items=4, n=16, dtype=torch.float64, seed=0):
    gen = generator(seed)
    x = point((items,), n, len(angles), torch.float64, gen)
    values = torch.tensor(angles, dtype=torch.float64).expand(items, -1)
    y = expmap(x, tangent_with_singular_values(x, values, gen))
    return x.to(dtype), y.to(dtype), values


@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("device", DEVICES)
@given(shape=shapes(), seed=seeds)
def test_kernel_angles_equal_the_differentiable_angles_in_float64(layout, device, shape, seed):
    batch, n, k = shape
    gen = generator(seed)
    x, y = (point(batch, n, k, torch.float64, gen, device) for _ in range(2))
    if layout == "rows":
        x, y = as_rows(x), as_rows(y)
    theta = inplace.principal_angles(x, y)
    assert theta.dtype == torch.float64 and theta.shape == (*batch, k)
    torch.testing.assert_close(theta, principal_angles(x, y), atol=tolerance(torch.float64, n, factor=100), rtol=0)


@pytest.mark.parametrize("kind", ANGLES)
def test_kernel_is_accurate_for_tiny_and_near_right_angles(kind):
    x, y, values = _pair_with_angles(ANGLES[kind])
    theta = inplace.principal_angles(x, y)
    atol = tolerance(torch.float64, 16, factor=100)
    torch.testing.assert_close(theta, principal_angles(x, y), atol=atol, rtol=0)
    torch.testing.assert_close(theta, values, atol=atol, rtol=1e-6)


@pytest.mark.parametrize("kind", ANGLES)
def test_kernel_on_float32_bases_matches_float64_arithmetic(kind):
    x, y, _ = _pair_with_angles(ANGLES[kind], dtype=torch.float32)
    theta = inplace.principal_angles(x, y)
    assert theta.dtype == torch.float64
    reference = principal_angles(x.double(), y.double())
    torch.testing.assert_close(theta, reference, atol=tolerance(torch.float32, 16, factor=10), rtol=0)


@given(shape=shapes(max_batch=1, generic=True), seed=seeds)
def test_kernel_angles_agree_with_scipy(shape, seed):
    _, n, k = shape
    gen = generator(seed)
    x, y = (point((), n, k, torch.float64, gen) for _ in range(2))
    expected = np.sort(scipy.linalg.subspace_angles(to_scipy(x), to_scipy(y)))
    np.testing.assert_allclose(inplace.principal_angles(x, y).numpy(), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("items", [1, 7, 300])
def test_kernel_agrees_across_chunk_boundaries(monkeypatch, items):
    monkeypatch.setattr(_fused, "_CHUNK_BYTES", 3 * 8 * 16 * 8)
    gen = generator(items)
    x, y = (as_rows(point((items,), 16, 8, torch.float64, gen)) for _ in range(2))
    torch.testing.assert_close(
        inplace.principal_angles(x, y), principal_angles(x, y), atol=tolerance(torch.float64, 16, factor=100), rtol=0
    )


def test_kernel_broadcasts_batch_dims_like_the_differentiable_angles():
    gen = generator(3)
    x, y = point((3, 1), 9, 2, torch.float64, gen), point((1, 4), 9, 2, torch.float64, gen)
    theta = inplace.principal_angles(x, y)
    assert theta.shape == (3, 4, 2)
    torch.testing.assert_close(theta, principal_angles(x, y), atol=tolerance(torch.float64, 9, factor=100), rtol=0)


def test_kernel_of_equal_bases_and_of_an_empty_batch():
    x = point((2,), 6, 3, torch.float64, generator(4))
    assert float(inplace.principal_angles(x, x).abs().max()) <= tolerance(torch.float64, 6)
    assert inplace.principal_angles(x[:0], x[:0]).shape == (0, 3)


def test_kernel_refuses_tensors_that_require_grad_unless_grad_mode_is_off():
    x = point((2,), 6, 3, torch.float32, generator(5))
    y = x.clone().requires_grad_()
    with pytest.raises(ManifoldTypeError, match="requires grad"):
        inplace.principal_angles(x, y)
    with torch.no_grad():
        assert inplace.principal_angles(x, y).shape == (2, 3)


@pytest.mark.parametrize(
    "other, error",
    [
        (torch.zeros(6, 2), ShapeError),
        (torch.zeros(7, 3), ShapeError),
        (torch.zeros(3, 6, 3), ShapeError),
        (torch.zeros(6, 3, dtype=torch.float64), ManifoldTypeError),
        (torch.zeros(6, 3, dtype=torch.int64), ManifoldTypeError),
        (torch.full((6, 3), math.nan), NonFiniteError),
        ("basis", ManifoldTypeError),
    ],
)
def test_kernel_refuses_bad_input_with_documented_errors(other, error):
    x = point((2,), 6, 3, torch.float32, generator(6))
    with pytest.raises(error):
        inplace.principal_angles(x, other)
