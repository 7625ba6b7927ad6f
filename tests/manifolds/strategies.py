"""Hypothesis strategies and tensor builders shared by the geometry tests.

Hypothesis draws only integers and floats (shapes, seeds, step sizes); every
tensor is built from a ``torch.Generator`` seeded with a drawn seed, so a
failing example is reproduced by its seed alone.
"""

from __future__ import annotations

import hypothesis.strategies as st
import torch

from manifolds import Grassmann

__all__ = [
    "DEVICES",
    "MAX_N",
    "seeds",
    "shapes",
    "point",
    "tangent",
    "tangent_with_singular_values",
    "orthogonal",
    "as_rows",
]

MAX_N = 12
"""Largest ambient dimension drawn; keeps the suite fast on two cores."""

DEVICES = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

seeds = st.integers(min_value=0, max_value=2**32 - 1)

_GRASSMANN = Grassmann()


@st.composite
def shapes(draw, *, max_n: int = MAX_N, max_batch: int = 3, min_codim: int = 0, generic: bool = False):
    """Draw ``(batch, n, k)``: ``batch`` a tuple of 0-2 leading dims, ``1 <= k <= n - min_codim``.

    With ``generic=True``, ``2k <= n``: two random ``k``-planes then meet only
    in ``0`` and a random step ``u`` has ``k`` distinct nonzero singular values.
    """
    batch = tuple(draw(st.lists(st.integers(1, max_batch), max_size=2)))
    n = draw(st.integers(max(1 + min_codim, 2 if generic else 1), max_n))
    k = draw(st.integers(1, n // 2 if generic else n - min_codim))
    return batch, n, k


def point(batch, n, k, dtype, gen, device="cpu") -> torch.Tensor:
    """Uniform random basis of shape ``(*batch, n, k)`` (a plain tensor)."""
    x = _GRASSMANN.random(*batch, n, k, dtype=dtype, generator=gen)
    return x.as_subclass(torch.Tensor).to(device)


def tangent(x: torch.Tensor, gen, *, spectral_norm: float | None = None) -> torch.Tensor:
    """Gaussian horizontal vector at ``x``, optionally rescaled to a given largest singular value."""
    u = torch.randn(x.shape, dtype=x.dtype, generator=gen).to(x.device)
    # Projecting twice keeps x^T u at rounding level relative to |u| even when
    # most of the Gaussian draw lay in span(x) (one projection leaves eps * |draw|).
    u = u - x @ (x.mT @ u)
    u = u - x @ (x.mT @ u)
    if spectral_norm is not None:
        u = u * (spectral_norm / torch.linalg.matrix_norm(u, ord=2))[..., None, None]
    return u


def tangent_with_singular_values(x: torch.Tensor, values: torch.Tensor, gen) -> torch.Tensor:
    """Horizontal ``u = U diag(values) V^T`` at ``x`` with prescribed singular values.

    ``values`` has shape ``(..., k)``; needs ``2k <= n``. ``U`` is taken from a
    Householder QR of ``[x, G]`` (orthonormal to working precision and
    orthogonal to ``x`` however ``G`` is conditioned); ``V`` is Haar-random.
    """
    k = x.shape[-1]
    draw = torch.randn(x.shape, dtype=x.dtype, generator=gen).to(x.device)
    left = torch.linalg.qr(torch.cat([x, draw], dim=-1)).Q[..., k:]
    right = orthogonal(x.shape[:-2], k, x.dtype, gen).to(x.device)
    return (left * values.unsqueeze(-2)) @ right.mT


def orthogonal(batch, k: int, dtype, gen) -> torch.Tensor:
    """Haar-random orthogonal ``(*batch, k, k)`` matrices, reflections included."""
    q, r = torch.linalg.qr(torch.randn(*batch, k, k, dtype=dtype, generator=gen))
    return q * torch.sgn(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """The same values stored as a transposed view over ``(..., k, n)`` memory."""
    return t.mT.contiguous().mT
