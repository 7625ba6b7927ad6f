r"""Vector transports on the Grassmann manifold.

Every entry has the signature ``transport(x, u, y, v) -> w``: ``v`` is a
horizontal tangent vector at ``x`` (shape ``(..., n, k)``), ``y`` the new point
(typically ``retraction(x, u)``), and ``w`` a horizontal tangent vector at
``y``. ``u`` may be ``None`` for entries that do not need it; ``parallel``
then recovers it as ``logmap(x, y)``. Entries are the optimizer's hot path
and do not check their arguments (garbage in, garbage out).

``projection``
    :math:`w = (I - yy^T) v`. Cheap; the default.
``parallel``
    Exact parallel transport along :math:`t \mapsto \exp_x(tu)` (Edelman,
    Arias & Smith 1998, eq. 2.68), computed from ``eigh`` of :math:`u^T u`,
    then expressed at the basis ``y`` given.
``aligned_projection``
    :math:`w = (I - yy^T) v\, O` with :math:`O` the orthogonal polar factor of
    :math:`x^T y`: replacing ``y`` by ``yQ`` turns ``w`` into ``wQ``, so ``w``
    represents the same tangent vector whichever basis represents ``y``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ._linalg import combine, gram, sinc
from .angles import _logmap
from .registry import Registry

__all__ = ["TRANSPORTS", "projection", "parallel", "aligned_projection", "polar_factor"]

TRANSPORTS: Registry = Registry("transport")


class _PolarFactor(torch.autograd.Function):
    """``W Z^T`` for ``m = W S Z^T``, differentiated without singular-vector gaps.

    # Note [gradient of the polar factor]
    # Through torch's SVD backward the gradient of W Z^T divides by
    # s_i^2 - s_j^2 and is NaN for repeated singular values, e.g. at x^T y = I
    # (duplicate subspaces). The polar factor itself is smooth wherever m is
    # invertible: with O = W Z^T and A = W^T dm Z, dO = W K Z^T where
    # K_ij = (A_ij - A_ji) / (s_i + s_j). So the backward of G is
    # W ((B - B^T) / (s_i + s_j)) Z^T with B = W^T G Z, finite unless two
    # singular values vanish; pairs with s_i + s_j <= eps * s_max get 0.
    """

    @staticmethod
    def forward(ctx, m):
        w, s, zh = torch.linalg.svd(m)
        ctx.save_for_backward(w, s, zh)
        return w @ zh

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        w, s, zh = ctx.saved_tensors
        b = w.mT @ grad @ zh.mT
        total = s.unsqueeze(-1) + s.unsqueeze(-2)
        floor = torch.finfo(s.dtype).eps * s.amax(-1, keepdim=True).unsqueeze(-1)
        usable = total > floor
        inner = torch.where(usable, (b - b.mT) / torch.where(usable, total, 1.0), 0.0)
        return w @ inner @ zh


def polar_factor(m: torch.Tensor) -> torch.Tensor:
    """Orthogonal polar factor ``W Z^T`` of a stack of square matrices ``m = W S Z^T``.

    The gradient is finite for repeated singular values.
    """
    return _PolarFactor.apply(m)


def _project(y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return v - y @ gram(y, v)


@TRANSPORTS.register
def projection(x, u, y, v):
    """Project ``v`` onto the horizontal space at ``y``."""
    return _project(y, v)


@TRANSPORTS.register
def aligned_projection(x, u, y, v):
    """Projection followed by alignment with the polar factor of ``x^T y``.

    Independent of the basis chosen to represent ``y``.
    """
    return combine(_project(y, v), polar_factor(gram(x, y)))


@TRANSPORTS.register
def parallel(x, u, y, v):
    r"""Parallel transport of ``v`` along the geodesic from ``x`` with velocity ``u``.

    With :math:`u^T u = V\Sigma^2 V^T` and :math:`A = u^T v`,

    .. math:: \tau v = v - x\,V\operatorname{sinc}(\Sigma)V^T A
              - \tfrac12\, u\,V\operatorname{sinc}^2(\Sigma/2)V^T A,

    which is Edelman-Arias-Smith's formula with :math:`U = uV\Sigma^{-1}`
    eliminated, so it stays accurate for tiny :math:`\Sigma`. The result is the
    horizontal lift at the geodesic's own basis :math:`\exp_x(u)`; it is then
    moved to the basis ``y`` passed in (multiplied by the polar factor of
    :math:`\exp_x(u)^T y`) and projected onto the horizontal space at ``y``.
    """
    if u is None:
        u = _logmap(x, y)
    s2 = gram(u, u)
    evals, evecs = torch.linalg.eigh(s2)
    sigma = evals.clamp_min(0).sqrt()
    a = gram(u, v)

    def spectral(values):
        return (evecs * values.unsqueeze(-2)) @ evecs.mT

    x_coef = -spectral(sinc(sigma)) @ a
    u_coef = -0.5 * spectral(sinc(sigma / 2).square()) @ a
    w = v + combine(x, x_coef, u, u_coef)
    end = combine(x, spectral(torch.cos(sigma)), u, spectral(sinc(sigma)))
    return _project(y, combine(w, polar_factor(gram(end, y))))
