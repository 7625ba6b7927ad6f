"""The logit registry: every entry's contract, and each entry's formula."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grassmann_cls import LOGITS, GrassmannHead
from grassmann_cls.errors import OptionError
from tests.conftest import generator, tolerance


def coefficients_and_norm(bases, x, normalize=True):
    x_hat = torch.nn.functional.normalize(x, dim=-1) if normalize else x
    return torch.einsum("...n,cnk->...ck", x_hat, bases), x_hat.norm(dim=-1, keepdim=True)


def random_bases(C, n, k, dtype, seed):
    q, _ = torch.linalg.qr(torch.randn(C, n, k, dtype=dtype, generator=generator(seed)))
    return q


def angle_to_subspace(bases, x):
    """Float64 angle between each x and each span(S_c), from the explicit residual."""
    coefficients = torch.einsum("bn,cnk->bck", x, bases)
    inside = torch.einsum("bck,cnk->bcn", coefficients, bases)
    residual = torch.linalg.vector_norm(x[:, None, :] - inside, dim=-1)
    return torch.atan2(residual, torch.linalg.vector_norm(coefficients, dim=-1))


@pytest.mark.parametrize("name", LOGITS.names())
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 4))
def test_logit_invariant_under_basis_rotation(name, seed, k):
    fn = LOGITS.resolve(name)
    bases = random_bases(3, 7, k, torch.float64, seed)
    x = torch.randn(5, 7, dtype=torch.float64, generator=generator(seed + 1))
    q = random_bases(3, k, k, torch.float64, seed + 2)
    before = fn(*coefficients_and_norm(bases, x))
    after = fn(*coefficients_and_norm(bases @ q, x))
    torch.testing.assert_close(after, before, atol=tolerance(torch.float64, 100), rtol=0)


@pytest.mark.parametrize("where", ["inside", "orthogonal", "zero"])
@pytest.mark.parametrize("name", LOGITS.names())
def test_logit_gradient_finite_at_extremes(name, where):
    bases = random_bases(2, 6, 2, torch.float64, 1)
    if where == "inside":
        x = bases[0] @ torch.tensor([0.6, -0.8], dtype=torch.float64)
    elif where == "orthogonal":
        x = torch.randn(6, dtype=torch.float64, generator=generator(2))
        x = x - bases[0] @ (bases[0].T @ x)
    else:
        x = torch.zeros(6, dtype=torch.float64)
    x = x[None].clone().requires_grad_()
    b = bases.clone().requires_grad_()
    head = GrassmannHead(6, 2, 2, logit=name, dtype=torch.float64, generator=generator(3))
    logits = torch.func.functional_call(head, {"bases": b}, (x,))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert torch.isfinite(x.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("name", LOGITS.names())
def test_logit_preserves_dtype_and_shape(name, dtype):
    fn = LOGITS.resolve(name)
    c, norm = coefficients_and_norm(
        random_bases(4, 6, 3, dtype, 3), torch.randn(5, 2, 6, dtype=dtype, generator=generator(4))
    )
    out = fn(c, norm)
    assert out.dtype == dtype and out.shape == (5, 2, 4)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize(
    ("name", "formula"),
    [
        ("projection", lambda bases, x: torch.cos(angle_to_subspace(bases, x)) * x.norm(dim=-1, keepdim=True)),
        (
            "squared_projection",
            lambda bases, x: (torch.cos(angle_to_subspace(bases, x)) * x.norm(dim=-1, keepdim=True)) ** 2,
        ),
        ("neg_angle", lambda bases, x: -angle_to_subspace(bases, x)),
    ],
)
def test_logit_matches_its_formula(name, formula, normalize, dtype):
    bases = random_bases(4, 8, 3, torch.float64, 4)
    x = torch.randn(6, 8, dtype=torch.float64, generator=generator(5))
    head = GrassmannHead(8, 4, 3, logit=name, normalize=normalize, scale=2.0, dtype=dtype, generator=generator(5))
    with torch.no_grad():
        head.bases.copy_(bases)
    x_hat = torch.nn.functional.normalize(x, dim=-1) if normalize else x
    expected = 2.0 * formula(bases, x_hat)
    atol = 1e-3 if dtype == torch.float32 and name == "neg_angle" else tolerance(dtype, 8 * 20)
    torch.testing.assert_close(head(x.to(dtype)).double(), expected, atol=atol, rtol=tolerance(dtype, 8))


def test_neg_angle_is_zero_inside_and_minus_half_pi_orthogonal():
    bases = random_bases(1, 5, 2, torch.float64, 6)
    inside = bases[0] @ torch.tensor([1.0, 2.0], dtype=torch.float64)
    outside = torch.randn(5, dtype=torch.float64, generator=generator(7))
    outside = outside - bases[0] @ (bases[0].T @ outside)
    fn = LOGITS.resolve("neg_angle")
    values = fn(*coefficients_and_norm(bases, torch.stack([inside, outside])))
    torch.testing.assert_close(values[:, 0], torch.tensor([0.0, -torch.pi / 2], dtype=torch.float64), atol=1e-7, rtol=0)


def test_user_callable_logit_is_used_and_named():
    def cubed_projection(coefficients, feature_norm):
        return torch.linalg.vector_norm(coefficients, dim=-1) ** 3

    head = GrassmannHead(6, 3, 2, logit=cubed_projection, scale=1.0, dtype=torch.float64, generator=generator(6))
    reference = GrassmannHead(6, 3, 2, scale=1.0, dtype=torch.float64, generator=generator(7))
    with torch.no_grad():
        reference.bases.copy_(head.bases)
    x = torch.randn(4, 6, dtype=torch.float64, generator=generator(8))
    torch.testing.assert_close(head(x), reference(x) ** 3)
    assert "cubed_projection" in repr(head)


def test_unknown_logit_lists_registered_names():
    with pytest.raises(OptionError) as info:
        LOGITS.resolve("cosine")
    for name in LOGITS.names():
        assert name in str(info.value)
