r"""Principal angles and the logarithm map.

Angles are computed from both the cosines and the sines (atan2), accurate
for tiny and for near-:math:`\pi/2` angles.
"""

from __future__ import annotations

import torch

from . import checks as _checks
from ._linalg import gram, sinc

# Note [accurate principal angles]
# The cosines of the principal angles are the singular values of x^T y, the
# sines those of (I - x x^T) y. arccos of the cosines loses about sqrt(eps)
# for small angles and arcsin of the sines is poor near pi/2; pairing both
# (cosines descending with sines ascending) and taking atan2(sin, cos) is
# accurate to a few ulps across [0, pi/2].

__all__ = ["principal_angles", "logmap"]


def principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Principal angles between the subspaces spanned by ``x`` and ``y``.

    .. math:: \theta_i = \operatorname{atan2}\bigl(\sigma_{k+1-i}((I - xx^T)y),\;
              \sigma_i(x^T y)\bigr), \qquad 0 \le \theta_1 \le \dots \le \theta_k \le \pi/2.

    Parameters
    ----------
    x, y : torch.Tensor
        Orthonormal bases of shape ``(..., n, k)`` (broadcastable batch dims),
        float32 or float64, finite, on one device. Orthonormality is not
        checked (see :meth:`Grassmann.assert_check_point_on_manifold
        <manifolds.Grassmann.assert_check_point_on_manifold>`).

    Returns
    -------
    torch.Tensor
        Angles in ascending order, shape ``(..., k)``.

    Raises
    ------
    ShapeError, ManifoldTypeError, NonFiniteError
        For inputs that break the above (see :mod:`manifolds.errors`).

    Examples
    --------
    >>> import torch
    >>> x = torch.eye(3, dtype=torch.float64)[:, :1]
    >>> y = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64) / 2 ** 0.5
    >>> principal_angles(x, y)
    tensor([0.7854], dtype=torch.float64)
    """
    _checks.pair("x", x, "y", y)
    _checks.finite(x=x, y=y)
    return _principal_angles(x, y)


def _principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`principal_angles` without argument checks (internal callers)."""
    m = gram(x, y)
    h = y - x @ m
    cos = torch.linalg.svdvals(m)
    sin = torch.linalg.svdvals(h).flip(-1)
    return torch.atan2(sin, cos)


def logmap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The Grassmann logarithm: the horizontal ``u`` at ``x`` with ``exp_x(u) = span(y)``.

    The result does not depend on which basis represents ``y``: ``y`` is first
    aligned by the orthogonal Procrustes factor of :math:`x^T y = W C Z^T`
    (``y' = y Z W^T``, so that :math:`x^T y' = W C W^T`). Then with
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
