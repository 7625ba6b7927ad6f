r"""Conversions to and from other representations of the Grassmannian.

geomstats represents a point of :math:`\mathrm{Gr}(n, k)` by the orthogonal
projector :math:`P = xx^T` (``n x n``) and uses the Frobenius metric on
projector tangents: its geodesic distance is :math:`\sqrt2\,\|\theta\|`, i.e.
:math:`\sqrt2` times :meth:`Grassmann.dist <manifolds.Grassmann.dist>`, and its
tangent vectors are :math:`\dot P = u x^T + x u^T` (with
:math:`\|\dot P\|_F = \sqrt2\|u\|_F`). These helpers form ``n x n`` matrices
by design; use them for interop and testing, not in training loops.
"""

from __future__ import annotations

import numpy as np
import torch

from . import checks as _checks
from ._linalg import sign_fixed_qr
from .errors import ManifoldTypeError, ShapeError

__all__ = [
    "GEOMSTATS_METRIC_SCALE",
    "to_projector",
    "from_projector",
    "tangent_to_projector",
    "tangent_from_projector",
    "to_scipy",
    "from_scipy",
]

GEOMSTATS_METRIC_SCALE = 2.0**0.5
"""geomstats' Grassmannian distance divided by ours."""


def to_projector(x: torch.Tensor) -> torch.Tensor:
    """Projector ``x x^T`` of shape ``(..., n, n)`` for bases ``x`` of shape ``(..., n, k)``."""
    _checks.basis("x", x)
    _checks.finite(x=x)
    return x @ x.mT


def from_projector(p: torch.Tensor, k: int) -> torch.Tensor:
    """An orthonormal basis ``(..., n, k)`` of the rank-``k`` projector ``p``.

    Takes the eigenvectors of the ``k`` largest eigenvalues, then a sign-fixed
    QR so the result is deterministic up to the eigen-solver.
    """
    _checks.tensor("p", p)
    k = _checks.integer("k", k)
    if p.dim() < 2 or p.shape[-1] != p.shape[-2] or not 1 <= k <= p.shape[-1]:
        raise ShapeError(f"expected a (..., n, n) projector and 1 <= k <= n; got {tuple(p.shape)}, k={k}")
    _checks.finite(p=p)
    _, vecs = torch.linalg.eigh((p + p.mT) / 2)
    return sign_fixed_qr(vecs[..., -k:].flip(-1))


def tangent_to_projector(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Projector-form tangent vector ``u x^T + x u^T`` of the horizontal ``u`` at ``x``.

    ``x`` and ``u`` have shape ``(..., n, k)`` (broadcastable batch dims), a
    float32/float64 dtype and finite values; otherwise raises
    :class:`~manifolds.errors.ShapeError`, :class:`~manifolds.errors.ManifoldTypeError`
    or :class:`~manifolds.errors.NonFiniteError`.
    """
    _checks.pair("x", x, "u", u)
    _checks.finite(x=x, u=u)
    return u @ x.mT + x @ u.mT


def tangent_from_projector(x: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
    """Horizontal ``u`` at ``x`` from a projector tangent ``dp``: ``u = (I - xx^T) dp x``.

    ``x`` has shape ``(..., n, k)`` and ``dp`` shape ``(..., n, n)`` (broadcastable
    batch dims), both of one float32/float64 dtype and device, with finite
    values; otherwise raises :class:`~manifolds.errors.ShapeError`,
    :class:`~manifolds.errors.ManifoldTypeError` or :class:`~manifolds.errors.NonFiniteError`.
    """
    _checks.basis("x", x)
    _checks.tensor("dp", dp)
    if x.dtype != dp.dtype or x.device != dp.device:
        raise ManifoldTypeError(
            f"x and dp must share dtype and device; got {x.dtype} on {x.device} and {dp.dtype} on {dp.device}"
        )
    n = x.shape[-2]
    if dp.dim() < 2 or dp.shape[-2:] != (n, n):
        raise ShapeError(f"dp must have shape (..., n, n) with n={n} from x {tuple(x.shape)}; got {tuple(dp.shape)}")
    try:
        torch.broadcast_shapes(x.shape[:-2], dp.shape[:-2])
    except RuntimeError:
        raise ShapeError(
            f"x and dp must have broadcastable batch dims; got {tuple(x.shape)} and {tuple(dp.shape)}"
        ) from None
    _checks.finite(x=x, dp=dp)
    w = dp @ x
    return w - x @ (x.mT @ w)


def to_scipy(x: torch.Tensor) -> np.ndarray:
    """A NumPy float64 copy of ``x`` for ``scipy.linalg`` (e.g. ``subspace_angles``)."""
    _checks.basis("x", x, dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
    return x.detach().cpu().to(torch.float64).numpy()


def from_scipy(a, *, dtype=torch.float64) -> torch.Tensor:
    """Orthonormal basis (sign-fixed QR) of the columns of a NumPy array ``(..., n, k)``.

    ``a`` must hold finite real numbers with ``1 <= k <= n`` (and full column
    rank for a unique result); ``dtype`` is float32 or float64.
    """
    dtype = _checks.dtype("dtype", dtype)
    try:
        array = np.asarray(a)
    except (TypeError, ValueError) as err:
        raise ManifoldTypeError(f"a must be an array of real numbers; got {type(a).__name__} ({err})") from None
    if array.dtype.kind not in "biuf":
        raise ManifoldTypeError(f"a must be an array of real numbers; got numpy dtype {array.dtype}")
    t = _checks.basis("a", torch.as_tensor(array.astype(np.float64, copy=False), dtype=dtype))
    _checks.finite(a=t)
    return sign_fixed_qr(t)
