"""Numerical edge cases of the geometry: results stay finite and on the manifold.

Every retraction, transport and distance of the registries meets zero, tiny,
rank-deficient and huge steps (rotation angles >= pi/2, up to 1e3 rad),
duplicate, orthogonal and nearly equal subspaces, and float32 bases with
``n = 8192, k = 64``. Each entry has one code path; retractions are also
met in place (``Grassmann.retr_`` on the optimizer's row storage, where the
chunked kernels run).
"""

from __future__ import annotations

import math

import pytest
import torch

from manifolds import DISTANCES, RETRACTIONS, TRANSPORTS, Grassmann, expmap, logmap, principal_angles
from tests.conftest import generator, tolerance
from tests.manifolds.strategies import orthogonal, point, tangent_with_singular_values

N, K = 7, 3
ORTHONORMAL = {torch.float32: 1e-5, torch.float64: 1e-12}
"""Largest ``max |x^T x - I|`` accepted; the long-run drift budget of float32."""

# Singular values of the step u, as fractions of K entries (rank-deficient ones end in zeros).
STEPS = {
    "zero": [0.0, 0.0, 0.0],
    "tiny": [1e-8, 1e-8, 1e-8],
    "rank_one": [1.0, 0.0, 0.0],
    "rank_two_tiny": [1e-8, 1e-9, 0.0],
    "half_pi": [math.pi / 2] * 3,
    "pi": [math.pi, math.pi / 2, 1.0],
    "ten": [10.0, 7.0, 3.0],
    "rank_one_huge": [1e3, 0.0, 0.0],
    "thousand": [1e3, 5e2, 1e2],
}
FORMS = ("entry", "in_place")


def orthonormality_error(y: torch.Tensor) -> float:
    eye = torch.eye(y.shape[-1], dtype=y.dtype)
    return float((y.mT @ y - eye).abs().amax())


def step(dtype, name: str, seed: int = 0, n: int = N, k: int = K) -> tuple[torch.Tensor, torch.Tensor]:
    gen = generator(seed)
    x = point((), n, k, dtype, gen)
    values = torch.tensor(STEPS[name], dtype=dtype) if name in STEPS else torch.full((k,), float(name), dtype=dtype)
    return x, tangent_with_singular_values(x, values, gen)


def retract(form: str, retraction: str, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The registry entry ``R(x, u)`` (``entry``), or ``Grassmann.retr_`` on row storage (``in_place``)."""
    if form == "entry":
        return RETRACTIONS.resolve(retraction)(x, u)
    rows = x.mT.clone(memory_format=torch.contiguous_format).mT  # a copy of x in the optimizer's layout
    return Grassmann(retraction=retraction).retr_(rows, u)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_retraction_is_finite_and_orthonormal_for_every_step(retraction, name, form, dtype):
    x, u = step(dtype, name)
    y = retract(form, retraction, x, u)
    assert bool(torch.isfinite(y).all())
    assert orthonormality_error(y) <= ORTHONORMAL[dtype]


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_in_place_retraction_with_transport_keeps_bases_and_momentum_finite(retraction, name, dtype):
    x, u = step(dtype, name)
    x, u = x.mT.contiguous().mT, u.mT.contiguous().mT  # the optimizer's row storage
    Grassmann(retraction=retraction).retr_transp_(x, u, u, alpha=-1.0)
    assert bool(torch.isfinite(x).all()) and bool(torch.isfinite(u).all())
    assert orthonormality_error(x) <= ORTHONORMAL[dtype]
    assert float((x.mT @ u).abs().amax()) <= 100 * tolerance(dtype, N) * max(1.0, float(u.abs().amax()))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_zero_step_returns_the_basis_itself(retraction, form, dtype):
    x, u = step(dtype, "zero")
    y = retract(form, retraction, x, u)
    torch.testing.assert_close(y, x, atol=tolerance(dtype, N), rtol=0)


@pytest.mark.parametrize("name", ["zero", "tiny", "rank_one", "rank_two_tiny", "half_pi"])
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_retraction_gradient_is_finite_at_degenerate_steps(retraction, name):
    x, u = step(torch.float64, name)
    x.requires_grad_(), u.requires_grad_()
    weights = torch.randn(x.shape, dtype=x.dtype, generator=generator(5))
    (RETRACTIONS.resolve(retraction)(x, u) * weights).sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(u.grad).all())


@pytest.mark.parametrize("with_step", [True, False], ids=["u_given", "u_recovered"])
@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("transport", TRANSPORTS.names())
def test_transport_is_finite_and_horizontal_for_every_step(transport, name, with_step, dtype):
    x, u = step(dtype, name)
    v = tangent_with_singular_values(x, torch.tensor([1.0, 0.5, 0.0], dtype=dtype), generator(3))
    y = RETRACTIONS.resolve("qr")(x, u)
    w = TRANSPORTS.resolve(transport)(x, u if with_step else None, y, v)
    assert bool(torch.isfinite(w).all())
    assert float((y.mT @ w).abs().amax()) <= 100 * tolerance(dtype, N)


# --- pairs of subspaces --------------------------------------------------------------


def pair(dtype, angles, seed: int = 0, k: int = K, n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    """Bases ``x, y`` of ``(n, k)`` with the given principal angles (``2k <= n``)."""
    q = point((), n, n, torch.float64, generator(seed))
    x, perp = q[:, :k], q[:, k : 2 * k]
    theta = torch.as_tensor(angles, dtype=torch.float64).expand(k)
    y = x * torch.cos(theta) + perp * torch.sin(theta)
    rotate = orthogonal((), k, torch.float64, generator(seed + 1))
    return x.to(dtype), (y @ rotate).to(dtype)


PAIRS = {
    "duplicate": lambda dtype: (lambda x: (x, x.clone()))(pair(dtype, 0.0)[0]),
    "same_span_other_basis": lambda dtype: pair(dtype, 0.0),
    "orthogonal": lambda dtype: pair(dtype, math.pi / 2),
    "tiny_angles": lambda dtype: pair(dtype, 1e-9 if dtype == torch.float64 else 1e-4),
    "mixed": lambda dtype: pair(dtype, [0.0, 1e-6, math.pi / 2]),
}


def expected_distance(name: str, theta: float, k: int = K) -> float:
    """Distance between subspaces with ``k`` equal principal angles ``theta``."""
    return {
        "geodesic": math.sqrt(k) * theta,
        "chordal": math.sqrt(k) * math.sin(theta),
        "projection_2": math.sin(theta),
        "fubini_study": math.atan2(
            math.sqrt(-math.expm1(k * math.log1p(-(math.sin(theta) ** 2)))) if theta < math.pi / 2 else 1.0,
            math.cos(theta) ** k,
        ),
        "binet_cauchy": math.sqrt(-math.expm1(k * math.log1p(-(math.sin(theta) ** 2)))) if theta < math.pi / 2 else 1.0,
        "procrustes": 2 * math.sqrt(k) * math.sin(theta / 2),
        "asimov": theta,
    }[name]


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("distance", DISTANCES.names())
def test_distance_is_finite_at_special_pairs(distance, kind, dtype):
    x, y = PAIRS[kind](dtype)
    d = DISTANCES.resolve(distance)(x, y)
    assert bool(torch.isfinite(d).all()) and float(d) >= 0


@pytest.mark.parametrize(
    ("kind", "theta"), [("duplicate", 0.0), ("same_span_other_basis", 0.0), ("orthogonal", math.pi / 2)]
)
@pytest.mark.parametrize("distance", DISTANCES.names())
def test_distance_is_exact_for_duplicate_and_orthogonal_subspaces(distance, kind, theta, dtype):
    x, y = PAIRS[kind](dtype)
    d = float(DISTANCES.resolve(distance)(x, y))
    assert d == pytest.approx(expected_distance(distance, theta), abs=10 * math.sqrt(K) * tolerance(dtype, N))


@pytest.mark.parametrize("distance", DISTANCES.names())
def test_distance_keeps_relative_accuracy_at_tiny_angles(distance, dtype):
    theta = 1e-9 if dtype == torch.float64 else 1e-4
    x, y = PAIRS["tiny_angles"](dtype)
    d = float(DISTANCES.resolve(distance)(x, y))
    assert d == pytest.approx(expected_distance(distance, theta), rel=1e-5 if dtype == torch.float64 else 2e-2)


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("distance", DISTANCES.names())
def test_distance_gradient_is_finite_at_special_pairs(distance, kind):
    x, y = PAIRS[kind](torch.float64)
    x.requires_grad_(), y.requires_grad_()
    DISTANCES.resolve(distance)(x, y).backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(y.grad).all())


@pytest.mark.parametrize("kind", PAIRS)
def test_logmap_is_finite_horizontal_and_as_long_as_the_distance(kind, dtype):
    x, y = PAIRS[kind](dtype)
    u = logmap(x, y)
    assert bool(torch.isfinite(u).all())
    assert float((x.mT @ u).abs().amax()) <= 100 * tolerance(dtype, N)
    length = torch.linalg.matrix_norm(u)
    torch.testing.assert_close(
        length,
        torch.linalg.vector_norm(principal_angles(x, y)),
        atol=100 * tolerance(dtype, N),
        rtol=1e-6 if dtype == torch.float64 else 1e-3,
    )


@pytest.mark.parametrize("kind", PAIRS)
def test_principal_angles_are_in_range_at_special_pairs(kind, dtype):
    x, y = PAIRS[kind](dtype)
    theta = principal_angles(x, y)
    assert bool(torch.isfinite(theta).all())
    assert float(theta.min()) >= 0 and float(theta.max()) <= math.pi / 2 + tolerance(dtype)


# --- large float32 problems -----------------------------------------------------------

LARGE_N, LARGE_K = 8192, 64


@pytest.fixture(scope="module")
def large():
    """One float32 basis of ``(8192, 64)`` and two steps: full rank (angles up to 2) and rank 8 (norm 1e3)."""
    gen = generator(11)
    x = point((), LARGE_N, LARGE_K, torch.float32, gen)
    full = tangent_with_singular_values(x, torch.linspace(0.01, 2.0, LARGE_K), gen)
    values = torch.zeros(LARGE_K)
    values[:8] = torch.linspace(1.0, 1e3, 8)
    return x, {"full_rank": full, "rank_8_huge": tangent_with_singular_values(x, values, gen)}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ["full_rank", "rank_8_huge"])
@pytest.mark.parametrize("retraction", RETRACTIONS.names())
def test_large_float32_retraction_is_orthonormal(large, retraction, name, form):
    x, steps = large
    y = retract(form, retraction, x, steps[name])
    assert bool(torch.isfinite(y).all())
    assert orthonormality_error(y) <= ORTHONORMAL[torch.float32]


@pytest.mark.parametrize("transport", TRANSPORTS.names())
def test_large_float32_transport_is_horizontal(large, transport):
    x, steps = large
    u = steps["full_rank"]
    y = RETRACTIONS.resolve("qr")(x, u)
    w = TRANSPORTS.resolve(transport)(x, u, y, u)
    assert bool(torch.isfinite(w).all())
    assert float((y.mT @ w).abs().amax()) <= 1e-5 * float(u.abs().amax()) * LARGE_K


@pytest.mark.parametrize("distance", DISTANCES.names())
def test_large_float32_distances_are_finite_and_zero_on_the_diagonal(large, distance):
    x, steps = large
    y = expmap(x, steps["full_rank"])
    d = DISTANCES.resolve(distance)(torch.stack([x, x]), torch.stack([x, y]))
    assert bool(torch.isfinite(d).all())
    assert float(d[0]) <= 1e-3 and float(d[1]) > 0.1


def test_large_float32_exp_and_log_invert_each_other(large):
    x, steps = large
    u = 0.75 * steps["full_rank"]  # largest angle 1.5 < pi/2: inside the injectivity radius
    y = expmap(x, u)
    torch.testing.assert_close(logmap(x, y), u, atol=2e-4, rtol=0)
    assert float(Grassmann().dist(x, y)) == pytest.approx(float(torch.linalg.matrix_norm(u)), rel=1e-4)
