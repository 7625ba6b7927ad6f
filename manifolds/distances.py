r"""Distances between subspaces, all functions of the principal angles.

Every entry has the signature ``distance(x, y) -> d`` for orthonormal bases of
shape ``(..., n, k)`` with broadcastable batch dims, returning shape ``(...)``.
Unlike the retractions and transports (optimizer hot paths), the entries check
their arguments: float32/float64 bases of one ``(n, k)``, dtype and device,
finite, else a :mod:`manifolds.errors` error.
:func:`cdist` gives the pairwise (``torch.cdist``-like) form of any entry.

====================  ====================================================  ======
name                  formula (:math:`\theta` = principal angles)           metric
====================  ====================================================  ======
``geodesic``          :math:`\|\theta\|_2`                                  yes
``chordal``           :math:`\|\sin\theta\|_2` (projection F-norm/√2)       yes
``projection_2``      :math:`\max_i \sin\theta_i`                           yes
``fubini_study``      :math:`\arccos \prod_i \cos\theta_i`                  yes
``binet_cauchy``      :math:`\sqrt{1 - \prod_i \cos^2\theta_i}`             yes
``procrustes``        :math:`2\,\|\sin(\theta/2)\|_2 = \min_Q\|xQ - y\|_F`  yes
``asimov``            :math:`\max_i \theta_i`                               yes
====================  ====================================================  ======
"""

from __future__ import annotations

import functools

import torch

from . import checks as _checks
from .angles import _principal_angles
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


def _angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Principal angles for the distances: :func:`~manifolds.angles.principal_angles` without its checks."""
    # Note [distance accuracy]
    # Every distance below is a norm or a maximum of functions of the angles,
    # so absolute accuracy relative to the largest angle is what counts; the
    # atan2 of the cosines and sines (Note [accurate principal angles]) gives
    # that in the input precision, with and without autograd (one code path).
    return _principal_angles(x, y)


def _checked(fn):
    """Register ``fn`` as a distance that checks its arguments first."""

    @functools.wraps(fn)
    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        _checks.pair("x", x, "y", y)
        _checks.finite(x=x, y=y)
        return fn(x, y)

    return DISTANCES.register(distance)


def _like(d: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return d.to(torch.promote_types(x.dtype, y.dtype))


def _sin_product_complement(theta: torch.Tensor) -> torch.Tensor:
    """``sqrt(1 - prod cos^2 theta)`` without cancellation for small angles.

    # Note [zero-safe square root]
    # For x = y the angles, and so the radicand, can be exactly 0, where
    # d sqrt(v)/dv is infinite and autograd returns inf * 0 = NaN. Like
    # torch.linalg.vector_norm at 0, we return the subgradient 0 instead: the
    # square root only ever sees a positive radicand (1 where it is 0), and
    # the result is masked back to 0.
    """
    sin2 = torch.sin(theta).square().clamp_max(1.0)
    log_cos2 = torch.log1p(-sin2.clamp_max(1.0 - torch.finfo(theta.dtype).eps))
    radicand = (-torch.expm1(log_cos2.sum(-1))).clamp_min(0)
    positive = radicand > 0
    return torch.where(positive, torch.where(positive, radicand, 1.0).sqrt(), 0.0)


@_checked
def geodesic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Geodesic arc length, the square root of the sum of squared principal angles."""
    return _like(torch.linalg.vector_norm(_angles(x, y), dim=-1), x, y)


@_checked
def chordal(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Projection Frobenius distance, the norm of the sines of the principal angles."""
    return _like(torch.linalg.vector_norm(torch.sin(_angles(x, y)), dim=-1), x, y)


@_checked
def projection_2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Projection 2-norm distance, the sine of the largest principal angle."""
    return _like(torch.sin(_angles(x, y)).amax(-1), x, y)


@_checked
def fubini_study(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fubini-Study distance, the angle whose cosine is the product of the principal angles' cosines."""
    theta = _angles(x, y)
    return _like(torch.atan2(_sin_product_complement(theta), torch.cos(theta).prod(-1)), x, y)


@_checked
def binet_cauchy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binet-Cauchy distance, from the product of the principal angles' squared cosines."""
    return _like(_sin_product_complement(_angles(x, y)), x, y)


@_checked
def procrustes(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Procrustes distance, the smallest Frobenius distance between the bases over rotations of one of them."""
    return _like(2.0 * torch.linalg.vector_norm(torch.sin(_angles(x, y) / 2), dim=-1), x, y)


@_checked
def asimov(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Asimov distance, the largest principal angle."""
    return _like(_angles(x, y).amax(-1), x, y)


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

    Raises
    ------
    ShapeError, ManifoldTypeError, NonFiniteError, OptionError
        For arguments that break the above (see :mod:`manifolds.errors`).
    """
    fn = DISTANCES.resolve(distance)
    chunk_size = _checks.integer("chunk_size", chunk_size, minimum=1)
    _checks.basis("x", x)
    _checks.basis("y", y)
    if x.dim() < 3 or y.dim() < 3 or x.shape[-2:] != y.shape[-2:]:
        raise ShapeError(
            f"cdist expects (..., P, n, k) and (..., Q, n, k) with equal n, k; "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    _checks.pair("x", x[..., :1, :, :], "y", y[..., :1, :, :])  # dtype, device, leading dims
    _checks.finite(x=x, y=y)
    if x.shape[-3] == 0:
        return x.new_zeros((*torch.broadcast_shapes(x.shape[:-3], y.shape[:-3]), 0, y.shape[-3]))
    parts = [
        fn(x[..., i : i + chunk_size, None, :, :], y[..., None, :, :, :]) for i in range(0, x.shape[-3], chunk_size)
    ]
    return torch.cat(parts, dim=-2)
