r"""Principal angles and the logarithm map.

Angles are computed from both the cosines and the sines (atan2), accurate
for tiny and for near-:math:`\pi/2` angles.
"""

from __future__ import annotations

import torch

from . import checks as _checks
from ._linalg import gram, sinc
from .errors import NotOnManifoldError

# Note [accurate principal angles]
# The cosines of the principal angles are the singular values of x^T y, the
# sines those of (I - x x^T) y. arccos of the cosines loses about sqrt(eps)
# for small angles and arcsin of the sines is poor near pi/2; pairing both
# (cosines descending with sines ascending) and taking atan2(sin, cos) is
# accurate to a few ulps across [0, pi/2].

__all__ = ["principal_angles", "logmap"]


def principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Principal angles between the subspaces spanned by ``x`` and ``y``.

    For ``x`` of shape ``(..., n, k_1)`` and ``y`` of shape ``(..., n, k_2)``
    there are :math:`k = \min(k_1, k_2)` angles, as in
    ``scipy.linalg.subspace_angles``. With ``a`` the basis with fewer columns
    and ``b`` the other one,

    .. math:: \theta_i = \operatorname{atan2}\bigl(\sigma_{k+1-i}((I - bb^T)a),\;
              \sigma_i(b^T a)\bigr), \qquad 0 \le \theta_1 \le \dots \le \theta_k \le \pi/2.

    Like scipy, any bases of full column rank are accepted: they are
    orthonormalised (thin QR) first, so the angles are those of the spanned
    subspaces whatever the bases.

    Parameters
    ----------
    x : torch.Tensor
        Bases of shape ``(..., n, k_1)``, of full column rank (orthonormal
        ones are the usual case).
    y : torch.Tensor
        Bases of shape ``(..., n, k_2)``, of full column rank, with batch dims
        that broadcast with those of ``x``; same dtype (float32 or float64) and
        device as ``x``. Both must be finite.

    Returns
    -------
    torch.Tensor
        Angles in ascending order, shape ``(..., min(k_1, k_2))``.

    Raises
    ------
    NotOnManifoldError
        If a basis of ``x`` or ``y`` is (numerically) rank deficient: its
        span has fewer than ``k`` dimensions, so the angles are undefined.
    ShapeError, ManifoldTypeError, NonFiniteError
        For inputs that break the above (see :mod:`manifolds.errors`).

    Examples
    --------
    >>> import torch
    >>> x = torch.eye(3, dtype=torch.float64)[:, :1]
    >>> y = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64) / 2 ** 0.5
    >>> principal_angles(x, y)
    tensor([0.7854], dtype=torch.float64)
    >>> principal_angles(x, torch.eye(3, dtype=torch.float64)[:, 1:])  # k_1 = 1, k_2 = 2
    tensor([1.5708], dtype=torch.float64)
    """
    _checks.pair("x", x, "y", y, same_k=False)
    _checks.finite(x=x, y=y)
    larger, smaller = (("x", x), ("y", y)) if x.shape[-1] >= y.shape[-1] else (("y", y), ("x", x))
    return _principal_angles(_orthonormalised(*larger), _orthonormalised(*smaller))


def _orthonormalised(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` where it is orthonormal, else its thin QR factor; refuses a rank-deficient ``x`` (one sync)."""
    # Note [orthonormalising in principal_angles]
    # Bases that are orthonormal to the library's tolerance are used as given:
    # even an O(eps) change of x (as QR makes) moves tiny sines by O(eps), which
    # is a large relative error for angles near eps^(1/2). Other bases are
    # replaced by Q of x = QR, so the angles are those of the spans and the
    # gradient is that of the spans' angles (zero along x A). A column whose
    # |R_jj| is below 100 n eps of the largest |R_ii| of its basis lies in the
    # span of the others to working precision: Q would be arbitrary there.
    if not x.numel():
        return x
    tolerance = _checks.orthonormality_tolerance(x.dtype, x.shape[-2])
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    orthonormal = (gram(x, x).detach() - eye).abs().amax((-2, -1)) <= tolerance
    q, r = torch.linalg.qr(x)
    diag = r.detach().diagonal(dim1=-2, dim2=-1).abs()
    deficient = (diag <= tolerance * diag.amax(-1, keepdim=True)).any(-1) & ~orthonormal
    if bool(deficient.any()):
        ratio = (diag / diag.amax(-1, keepdim=True)).amin(-1)[deficient].amin()
        raise NotOnManifoldError(
            f"{name} must have full column rank; a basis of shape {tuple(x.shape[-2:])} spans fewer than "
            f"{x.shape[-1]} dimensions (smallest |R_jj| / largest: {float(ratio):.3g})"
        )
    # The value is x itself; the gradient flows only through the horizontal
    # part of a perturbation, (I - x x^T) dx, which is the span's derivative and
    # so the derivative of the QR route at x (the angles are those of the spans).
    frozen = x.detach()
    delta = x - frozen
    exact = frozen + (delta - frozen @ gram(frozen, delta))
    return torch.where(orthonormal[..., None, None], exact, q)


def _principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`principal_angles` without argument checks; ``y`` has no more columns than ``x``."""
    # With k_y < k_x the sines are those of (I - x x^T) y: the residual of the
    # smaller basis off the larger one has exactly k_y singular values.
    m = gram(x, y)
    h = y - x @ m
    cos = torch.linalg.svdvals(m)
    sin = torch.linalg.svdvals(h).flip(-1)
    return torch.atan2(sin, cos)


def logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The Grassmann logarithm: the horizontal ``u`` at ``x`` with ``exp_x(u) = span(y)``.

    The result does not depend on which basis represents ``y``: ``y`` is first
    aligned by the orthogonal Procrustes factor of :math:`x^T y = W C Z^T`
    (:math:`y' = y Z W^T`, so that :math:`x^T y' = W C W^T`). Then with
    :math:`H = y' - x x^T y'` and :math:`\theta = \operatorname{atan2}(\|HW\|, C)`,

    .. math:: \log_x(y) = H W \operatorname{diag}(\theta/\sin\theta)\, W^T .

    Only ``k x k`` SVDs are needed.

    Parameters
    ----------
    x, y : torch.Tensor
        Orthonormal bases of shape ``(..., n, k)`` (broadcastable batch dims),
        float32 or float64, finite, on one device.

    Returns
    -------
    torch.Tensor
        Horizontal tangent vector at ``x`` of shape ``(..., n, k)`` with norm
        equal to the geodesic distance.

    Notes
    -----
    Inside the injectivity radius (all principal angles ``< pi/2``) this is
    the exact inverse of :func:`~manifolds.retractions.expmap`. At the cut
    locus (some angle equal to ``pi/2``) the logarithm is not unique; the
    vector returned is one of the minimising ones (chosen by the SVD), and it
    still has norm equal to the distance, so ``exp_x(log_x(y))`` spans ``y``.

    Raises
    ------
    ShapeError, ManifoldTypeError, NonFiniteError
        For inputs that break the above (see :mod:`manifolds.errors`).
    """
    _checks.pair("x", x, "y", y)
    _checks.finite(x=x, y=y)
    return _logmap(x, y)


def _logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`logmap` without argument checks (used by ``Grassmann.logmap`` and the transports)."""
    m = gram(x, y)
    w, c, zh = torch.linalg.svd(m)
    y_aligned = y @ (zh.mT @ w.mT)
    h = y_aligned - x @ (w * c.unsqueeze(-2)) @ w.mT
    hw = h @ w
    s = torch.linalg.vector_norm(hw, dim=-2)
    theta = torch.atan2(s, c)
    scale = 1.0 / sinc(theta)
    return ((hw * scale.unsqueeze(-2)) @ w.mT).mT.contiguous().mT
