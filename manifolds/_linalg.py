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

from collections.abc import Callable

import torch

__all__ = [
    "gram",
    "combine",
    "sym_apply",
    "cos_sinc_sqrt",
    "sign_fixed_qr",
    "cholesky_qr",
    "sinc",
    "tol",
]


def tol(dtype: torch.dtype, n: int = 1, factor: float = 10.0) -> float:
    """Tolerance ``factor * n * eps(dtype)`` used for checks."""
    return factor * max(n, 1) * torch.finfo(dtype).eps


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


def sym_apply(g: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``V fn(L) V^T`` for the eigendecomposition ``g = V L V^T`` of symmetric ``g``."""
    evals, evecs = torch.linalg.eigh(g)
    return (evecs * fn(evals).unsqueeze(-2)) @ evecs.mT


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
    # step. The default max_cond keeps eps * cond below 1e-5 in float32.
    """
    if max_cond is None:
        max_cond = 1e-5 / (4 * torch.finfo(z.dtype).eps) if z.dtype != torch.float64 else 1e8
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
