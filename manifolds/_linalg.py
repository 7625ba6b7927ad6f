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
    if (u is None) != (b is None):
        raise TypeError("combine takes u and b together or neither")
    if u is not None and b is not None:
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

    Both are entire functions of ``S``: with :math:`S = V\Lambda V^T`,
    :math:`\cos\sqrt S = V \cos\sqrt\Lambda\, V^T` and likewise for
    :math:`\operatorname{sinc}`. Computed in float64 and returned in ``S``'s
    dtype; the gradient is finite everywhere, also where eigenvalues repeat
    (e.g. at ``S = 0``).
    """
    return _CosSincSqrt.apply(s)


# Note [differentiable exp coefficients]
# The forward is eigh of S in float64: accurate for any size of step (a
# 2k x 2k matrix_exp overflows in its squarings for |S| ~ 1e27, which a huge
# but finite gradient can reach). eigh's own backward divides by eigenvalue
# gaps and is NaN where eigenvalues repeat, e.g. at u = 0, where every
# parametrisation y = exp_x(u) starts. The backward here is the Daleckii-Krein
# formula dF = V (D o (V^T dS V)) V^T with divided differences
# D_ij = (f(l_i) - f(l_j)) / (l_i - l_j), replaced by f'((l_i + l_j) / 2) when
# the gap is tiny, which is finite for any spectrum.
def _cos_f(lam):
    # cos(sqrt(l)) and its derivative; a Taylor series near 0 (also for the
    # tiny negative eigenvalues of a rounded PSD matrix), so both are smooth.
    small = lam.abs() < 1e-4
    root = torch.where(small, torch.ones_like(lam), lam).clamp_min(0.0).sqrt()
    value = torch.where(small, 1.0 - lam / 2.0 + lam * lam / 24.0, torch.cos(root))
    slope = torch.where(small, -0.5 + lam / 12.0 - lam * lam / 240.0, -0.5 * sinc(root))
    return value, slope


def _sinc_f(lam):
    # sinc(sqrt(l)) and its derivative (cos(sqrt l) - sinc(sqrt l)) / (2 l), as above.
    small = lam.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(lam), lam).clamp_min(0.0)
    root = safe.sqrt()
    far = sinc(root)
    value = torch.where(small, 1.0 - lam / 6.0 + lam * lam / 120.0, far)
    slope = torch.where(
        small, -1.0 / 6.0 + lam / 60.0 - lam * lam / 1680.0, (torch.cos(root) - far) / (2.0 * safe.clamp_min(1e-300))
    )
    return value, slope


def _divided_differences(f, lam):
    value, _ = f(lam)
    _, mid_slope = f(0.5 * (lam.unsqueeze(-1) + lam.unsqueeze(-2)))
    gap = lam.unsqueeze(-1) - lam.unsqueeze(-2)
    close = gap.abs() <= 1e-6 * (1.0 + lam.abs().unsqueeze(-1).maximum(lam.abs().unsqueeze(-2)))
    quotient = (value.unsqueeze(-1) - value.unsqueeze(-2)) / torch.where(close, torch.ones_like(gap), gap)
    return value, torch.where(close, mid_slope, quotient)


class _CosSincSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s):
        evals, evecs = torch.linalg.eigh(s.double())
        lam = evals
        ctx.save_for_backward(lam, evecs)
        ctx.dtype = s.dtype
        cos_values, _ = _cos_f(lam)
        sinc_values, _ = _sinc_f(lam)
        cos_part = (evecs * cos_values.unsqueeze(-2)) @ evecs.mT
        sinc_part = (evecs * sinc_values.unsqueeze(-2)) @ evecs.mT
        return cos_part.to(s.dtype), sinc_part.to(s.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_cos, grad_sinc):
        lam, evecs = ctx.saved_tensors
        total = torch.zeros_like(evecs)
        for f, grad in ((_cos_f, grad_cos), (_sinc_f, grad_sinc)):
            if grad is None:
                continue
            _, diff = _divided_differences(f, lam)
            inner = evecs.mT @ grad.double() @ evecs
            total = total + diff * inner
        grad_s = evecs @ total @ evecs.mT
        return (0.5 * (grad_s + grad_s.mT)).to(ctx.dtype)


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
