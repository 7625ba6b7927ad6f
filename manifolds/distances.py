r"""Distances between subspaces, all functions of the principal angles.

Every entry has the signature ``distance(x, y) -> d`` for orthonormal bases of
shape ``(..., n, k)`` with broadcastable batch dims, returning shape ``(...)``.
:func:`cdist` gives the pairwise (``torch.cdist``-like) form of any entry.

====================  ==================================================  ======
name                  formula (:math:`\theta` = principal angles)         metric
====================  ==================================================  ======
``geodesic``          :math:`\|\theta\|_2`                                yes
``chordal``           :math:`\|\sin\theta\|_2` (projection F-norm/√2)     yes
``projection_2``      :math:`\max_i \sin\theta_i`                         yes
``fubini_study``      :math:`\arccos \prod_i \cos\theta_i`                yes
``binet_cauchy``      :math:`\sqrt{1 - \prod_i \cos^2\theta_i}`           yes
``procrustes``        :math:`2\,\|\sin(\theta/2)\|_2 = \min_Q\|xQ - y\|_F`  yes
``asimov``            :math:`\max_i \theta_i`                             yes
====================  ==================================================  ======
"""

from __future__ import annotations

import torch

from .angles import principal_angles
from .errors import ShapeError
from .registry import Registry

__all__ = [
    "DISTANCES",
    "geodesic",
    "chordal",
    "projection_2",
    "fubini_study",
    "binet_cauchy",
    "procrustes",
    "asimov",
    "cdist",
]

DISTANCES: Registry = Registry("distance")


def _sin_product_complement(theta: torch.Tensor) -> torch.Tensor:
    """``sqrt(1 - prod cos^2 theta)`` without cancellation for small angles."""
    sin2 = torch.sin(theta).square().clamp_max(1.0)
    log_cos2 = torch.log1p(-sin2.clamp_max(1.0 - torch.finfo(theta.dtype).eps))
    return (-torch.expm1(log_cos2.sum(-1))).clamp_min(0).sqrt()


@DISTANCES.register
def geodesic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Geodesic arc length, the square root of the sum of squared principal angles."""
    return torch.linalg.vector_norm(principal_angles(x, y), dim=-1)


@DISTANCES.register
def chordal(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Projection Frobenius distance ``||sin theta||`` (= ``||xx^T - yy^T||_F / sqrt 2``)."""
    return torch.linalg.vector_norm(torch.sin(principal_angles(x, y)), dim=-1)


@DISTANCES.register
def projection_2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Projection 2-norm distance, the largest ``sin theta`` (= ``||xx^T - yy^T||_2``)."""
    return torch.sin(principal_angles(x, y)).amax(-1)


@DISTANCES.register
def fubini_study(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fubini-Study distance ``arccos(prod cos theta)``, evaluated with atan2."""
    theta = principal_angles(x, y)
    return torch.atan2(_sin_product_complement(theta), torch.cos(theta).prod(-1))


@DISTANCES.register
def binet_cauchy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binet-Cauchy distance ``sqrt(1 - prod cos^2 theta)``."""
    return _sin_product_complement(principal_angles(x, y))


@DISTANCES.register
def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Procrustes distance ``2 ||sin(theta / 2)||``, the smallest ``||x Q - y||_F``."""
    return 2.0 * torch.linalg.vector_norm(torch.sin(principal_angles(x, y) / 2), dim=-1)


@DISTANCES.register
def asimov(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Asimov distance, the largest principal angle."""
    return principal_angles(x, y).amax(-1)


def cdist(x: torch.Tensor, y: torch.Tensor, distance="geodesic", *, chunk_size: int = 256):
    """Pairwise distances between two sets of subspaces.

    Parameters
    ----------
    x : torch.Tensor
        Bases of shape ``(..., P, n, k)``.
    y : torch.Tensor
        Bases of shape ``(..., Q, n, k)``.
    distance : str or callable
        A :data:`DISTANCES` name or a function ``(x, y) -> d``.
    chunk_size : int
        Rows of ``x`` processed at once (bounds memory to ``chunk * Q * n * k``).

    Returns
    -------
    torch.Tensor
        Shape ``(..., P, Q)``.
    """
    fn = DISTANCES.resolve(distance)
    if x.dim() < 3 or y.dim() < 3 or x.shape[-2:] != y.shape[-2:]:
        raise ShapeError(
            f"cdist expects (..., P, n, k) and (..., Q, n, k) with equal n, k; "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    parts = [
        fn(x[..., i : i + chunk_size, None, :, :], y[..., None, :, :, :])
        for i in range(0, x.shape[-3], chunk_size)
    ]
    return torch.cat(parts, dim=-2)
