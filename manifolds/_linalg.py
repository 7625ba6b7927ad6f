"""Batched small-matrix kernels shared by the geometry.

Everything here works on stacks of ``n x k`` bases with ``k`` small and never
forms an ``n x n`` matrix. Results are returned as transposed views over
``(..., k, n)`` storage.

# Note [memory layout]
# A basis has the logical shape (..., n, k) (geoopt's convention) but we store
# it as a transposed view over contiguous (..., k, n) memory, which is
# nn.Linear's weight layout: batched products with small k run 2-2.5x faster
# on it and the GCR head can view the bases as a (C*k, n) weight for free.
# Every kernel below computes in this "row" form and returns ``rows.mT``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "gram",
    "combine",
    "spd_inv_sqrt",
    "default_max_cond",
    "repair_orthonormality",
    "cos_sinc_sqrt",
    "sign_fixed_qr",
    "cholesky_qr",
    "sinc",
]


def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a^T b`` for stacks of ``(..., n, k)`` matrices -> ``(..., k, k)``."""
    return a.mT @ b


def combine(
    x: torch.Tensor, a: torch.Tensor, u: torch.Tensor | None = None, b: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ a + u @ b`` computed in row form, returned with row storage.

    ``x, u`` have shape ``(..., n, k)``; ``a, b`` shape ``(..., k, k)``.
    """
    rows = a.mT @ x.mT
    if u is not None:
        rows = rows.addmm_(b.mT, u.mT) if rows.dim() == 2 else rows.add_(b.mT @ u.mT)
    return rows.mT


class _SpdInvSqrt(torch.autograd.Function):
    """``g^{-1/2}`` and the eigenvalues of an SPD stack ``g``, with a finite gradient everywhere.

    # Note [gradient of matrix functions]
    # torch's eigh backward divides by eigenvalue gaps, so a function of g
    # differentiated through eigh gets a NaN gradient wherever g has repeated
    # eigenvalues: for the polar retraction g = I + u^T u at u = 0, i.e. at
    # every first step. The derivative of V f(L) V^T itself is finite there
    # (Daleckii-Krein): V (F o (V^T G V)) V^T with F_ij the divided difference
    # (f(l_i) - f(l_j)) / (l_i - l_j), which tends to f'(l_i) as l_j -> l_i.
    # Close pairs (gap below eps^(1/3) relative) take f' at the midpoint,
    # whose error (gap^2 f^(3) / 24) is then below the quotient's rounding.
    """

    @staticmethod
    def forward(ctx, g):
        evals, evecs = torch.linalg.eigh(g)
        lam = evals.clamp_min(torch.finfo(g.dtype).tiny)
        values = lam.rsqrt()
        ctx.save_for_backward(lam, evecs, values)
        ctx.mark_non_differentiable(evals)
        return (evecs * values.unsqueeze(-2)) @ evecs.mT, evals

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_evals):
        lam, evecs, values = ctx.saved_tensors
        li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
        gap = li - lj
        close = gap.abs() <= torch.finfo(lam.dtype).eps ** (1 / 3) * torch.maximum(li, lj)
        mid = (li + lj) / 2
        derivative = -0.5 * mid.rsqrt() / mid
        quotient = (values.unsqueeze(-1) - values.unsqueeze(-2)) / torch.where(close, 1.0, gap)
        divided = torch.where(close, derivative, quotient)
        return evecs @ (divided * (evecs.mT @ grad @ evecs)) @ evecs.mT


def spd_inv_sqrt(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(g^{-1/2}, eigenvalues)`` of a symmetric positive definite stack ``g`` (``(..., k, k)``).

    Eigenvalues below ``tiny`` are clamped; the gradient is finite for
    repeated eigenvalues (see Note [gradient of matrix functions]).
    """
    return _SpdInvSqrt.apply(g)


def default_max_cond(dtype: torch.dtype) -> float:
    """Largest Gram condition number one orthonormalisation pass may see (Note [Cholesky-QR accuracy]).

    It keeps ``eps * cond`` below 1e-5 in float32 and 1e-12 in float64, the
    orthonormality the edge-case and drift tests ask for.
    """
    return (1e-12 if dtype == torch.float64 else 1e-5) / (4 * torch.finfo(dtype).eps)


def repair_orthonormality(y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """One more Cholesky-QR pass over the items of ``y`` (``(..., n, k)``) whose ``cond`` is too large.

    # Note [second orthonormalisation pass]
    # Gram-based formulas (polar, Cayley) lose orthonormality like
    # eps * cond(k x k system): a rank-deficient step u with ||u||_2 = 100
    # gives cond(I + u^T u) = 1e4 and ||y^T y - I|| ~ 1e-3 in float32. A
    # Cholesky-QR pass over such a y sees cond(y^T y) ~ 1 and makes it
    # orthonormal to working precision, moving it by the same O(eps * cond)
    # by which it missed. ``cond`` has shape ``(...)``; one host sync.
    """
    bad = ~(cond <= default_max_cond(y.dtype))
    if not bool(bad.any()):
        return y
    return torch.where(bad[..., None, None], cholesky_qr(y), y)


def cos_sinc_sqrt(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``cos(sqrt S)`` and ``sinc(sqrt S)`` of a symmetric PSD stack ``S`` (``(..., k, k)``).

    .. math:: \exp\begin{pmatrix} 0 & I \\ -S & 0 \end{pmatrix}
              = \begin{pmatrix} \cos\sqrt S & \operatorname{sinc}\sqrt S \\
                -S \operatorname{sinc}\sqrt S & \cos\sqrt S \end{pmatrix}

    # Note [differentiable exp coefficients]
    # Both functions are entire in S, and one 2k x 2k matrix exponential gives
    # them (the even and odd parts of its series). eigh of S gives them too,
    # but its backward divides by eigenvalue gaps: the gradient is NaN
    # wherever u^T u has repeated eigenvalues, e.g. at u = 0, where every
    # parametrisation y = exp_x(u) starts. matrix_exp's backward is finite
    # everywhere, and its forward is as accurate as eigh for |sqrt S| <~ pi.
    """
    k = s.shape[-1]
    eye = torch.eye(k, dtype=s.dtype, device=s.device).expand_as(s)
    zero = torch.zeros_like(s)
    block = torch.cat([torch.cat([zero, eye], dim=-1), torch.cat([-s, zero], dim=-1)], dim=-2)
    exp_block = torch.linalg.matrix_exp(block)
    return exp_block[..., :k, :k], exp_block[..., :k, k:]


def sinc(s: torch.Tensor) -> torch.Tensor:
    """``sin(s) / s`` with the removable singularity at 0 filled in."""
    return torch.sinc(s / torch.pi)


def sign_fixed_qr(z: torch.Tensor) -> torch.Tensor:
    """Householder QR of ``z`` (shape ``(..., n, k)``) with ``diag(R) >= 0``.

    # Note [sign-fixed QR]
    # LAPACK's QR may return columns with flipped signs. With diag(R) >= 0
    # the Q factor is unique for full-rank z, so R(x, 0) = x as a matrix and
    # a momentum buffer never sees a silently flipped column.
    """
    q, r = torch.linalg.qr(z)
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    sign = torch.where(d < 0, -1.0, 1.0).to(z.dtype)
    return (q * sign.unsqueeze(-2)).mT.contiguous().mT


def cholesky_qr(z: torch.Tensor, max_cond: float | None = None) -> torch.Tensor:
    """Q factor of ``z = QR`` (``diag(R) > 0``) by Cholesky of the ``k x k`` Gram matrix.

    Items whose Gram matrix is not numerically positive definite, or whose
    condition estimate ``(max diag L / min diag L)^2`` exceeds ``max_cond``,
    fall back to :func:`sign_fixed_qr`.

    # Note [Cholesky-QR accuracy]
    # Cholesky-QR loses orthonormality like eps * cond(z^T z). For a retraction
    # z = x + u with x^T u = 0 the Gram matrix is I + u^T u, so cond <= 1 +
    # ||u||_2^2 and one pass is as accurate as Householder QR for any sensible
    # step. The default max_cond keeps eps * cond below 1e-5 in float32 and
    # 1e-12 in float64 (see default_max_cond).
    """
    if max_cond is None:
        max_cond = default_max_cond(z.dtype)
    zr = z.mT
    g = zr @ z
    chol, info = torch.linalg.cholesky_ex(g)
    diag = torch.diagonal(chol, dim1=-2, dim2=-1)
    ratio = diag.amin(-1) / diag.amax(-1).clamp_min(torch.finfo(z.dtype).tiny)
    bad = (info != 0) | ~(ratio * ratio * max_cond >= 1.0)
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    chol = torch.where(bad[..., None, None], eye, chol)
    # z R^{-1} with R = L^T; LAPACK returns it column-major, i.e. row storage.
    q = torch.linalg.solve_triangular(chol.mT, z, upper=True, left=False)
    if bool(bad.any()):
        q = q.clone()
        q[bad] = sign_fixed_qr(z[bad])
    return q
