r"""Retractions on the Grassmann manifold.

Every entry has the signature ``retraction(x, u) -> y`` with ``x`` an
orthonormal basis of shape ``(..., n, k)`` and ``u`` a horizontal tangent vector
(``x^T u = 0``) of the same shape; ``y`` is an orthonormal basis of shape
``(..., n, k)``. All entries are batched and autograd-safe. They are the
optimizer's hot path and do not check their arguments (garbage in, garbage
out); :func:`expmap` is the checked form of ``exp``.

===========  ================================================  ================
name         formula                                           agreement w/ exp
===========  ================================================  ================
``qr``       :math:`\operatorname{qf}(x + u)`, diag(R) >= 0    1st order
``polar``    :math:`(x+u)(I + u^Tu)^{-1/2}`                    2nd order
``cayley``   :math:`(x(I-\tfrac14 S) + u)(I+\tfrac14 S)^{-1}`  2nd order
``exp``      the exponential map                               exact
===========  ================================================  ================

(:math:`S = u^T u`; orders are for the bases as matrices. As subspaces,
``qr`` and ``polar`` both span :math:`x + u` and agree with ``exp`` to second
order.) Each name is a distinct map. The former name ``cholesky_qr`` computed
the same map as ``qr``; it is still accepted, with a ``FutureWarning``, and
resolves to ``qr``.

The in-place methods of :class:`~manifolds.Grassmann` (``retr_``,
``retr_transp_``, ``momentum_step_``) run a chunked kernel for each entry
here; it computes the same map as the entry.
"""

from __future__ import annotations

import torch

from . import checks as _checks
from ._linalg import cholesky_qr as _cholesky_qr
from ._linalg import combine, cos_sinc_sqrt, default_max_cond, gram, repair_orthonormality, sign_fixed_qr, spd_inv_sqrt
from .registry import Registry

__all__ = ["RETRACTIONS", "qr", "polar", "cayley", "exp", "expmap"]

RETRACTIONS: Registry = Registry("retraction", legacy={"cholesky_qr": "qr"})


def expmap(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""The Grassmann exponential map, through the ``k x k`` Gram matrix.

    With the thin SVD :math:`u = U\Sigma V^T`,

    .. math:: \exp_x(u) = x V\cos\Sigma V^T + U\sin\Sigma V^T
              = x\,V\cos\Sigma V^T + u\,V\operatorname{sinc}\Sigma V^T,

    where :math:`V\cos\Sigma V^T = \cos\sqrt{u^T u}` and
    :math:`V\operatorname{sinc}\Sigma V^T = \operatorname{sinc}\sqrt{u^T u}`
    are entire functions of the ``k x k`` Gram matrix, evaluated without
    forming ``U`` (see :func:`~manifolds._linalg.cos_sinc_sqrt`; the gradient
    is finite at ``u = 0``). The result is re-orthonormalised by one
    Cholesky-QR pass (a no-op in exact arithmetic).

    Parameters
    ----------
    x : torch.Tensor
        Orthonormal basis, shape ``(..., n, k)``, float32 or float64.
    u : torch.Tensor
        Horizontal tangent vector at ``x``, shape ``(..., n, k)`` (batch dims
        broadcastable with ``x``'s), same dtype and device.

    Returns
    -------
    torch.Tensor
        Orthonormal basis of shape ``(..., n, k)``.

    Raises
    ------
    ShapeError, ManifoldTypeError, NonFiniteError
        For inputs that break the above (see :mod:`manifolds.errors`).

    Notes
    -----
    The ``exp`` retraction and :meth:`Grassmann.expmap
    <manifolds.Grassmann.expmap>` compute the same without these checks.
    """
    _checks.pair("x", x, "u", u)
    _checks.finite(x=x, u=u)
    return _expmap(x, u)


def _expmap(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`expmap` without argument checks (the hot path of optimizers)."""
    cos_part, sinc_part = cos_sinc_sqrt(gram(u, u))
    return _cholesky_qr(combine(x, cos_part, u, sinc_part))


@RETRACTIONS.register
def qr(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Sign-fixed QR of ``x + u`` (``R(x, 0) = x`` as a matrix).

    This function is Householder QR. The in-place methods of
    :class:`~manifolds.Grassmann` compute the same Q factor (unique, since
    ``diag(R) > 0``) by Cholesky-QR through the ``k x k`` Gram matrix
    ``I + u^T u``, at a fraction of the cost, with Householder QR for
    ill-conditioned items.
    """
    return sign_fixed_qr(x + u)


@RETRACTIONS.register
def polar(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Polar factor of ``x + u``: :math:`(x+u)\,((x+u)^T(x+u))^{-1/2}`."""
    z = x + u
    inv_sqrt, evals = spd_inv_sqrt(gram(z, z))
    cond = evals[..., -1] / evals[..., 0].clamp_min(torch.finfo(z.dtype).tiny)
    return repair_orthonormality(combine(z, inv_sqrt), cond)


@RETRACTIONS.register
def cayley(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""Low-rank Cayley transform :math:`(I - W/2)^{-1}(I + W/2)x`, :math:`W = ux^T - xu^T`.

    For horizontal ``u`` it reduces to ``k x k`` algebra (no ``n x n`` solve):

    .. math:: y = \bigl(x(I - \tfrac14 S) + u\bigr)(I + \tfrac14 S)^{-1}, \quad S = u^T u,

    which is exactly orthonormal when ``x`` is; the SPD solve uses a Cholesky
    factor. Huge steps (``cond(I + S/4)`` beyond what one pass keeps
    orthonormal) get a second orthonormalisation pass. One Newton-Schulz step keeps the result
    orthonormal to rounding over many steps.
    """
    s = gram(u, u)
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
    chol = torch.linalg.cholesky(eye + 0.25 * s)
    inv = torch.cholesky_solve(eye.expand_as(s), chol)
    diag = torch.diagonal(chol, dim1=-2, dim2=-1)
    cond = (diag.amax(-1) / diag.amin(-1)).square()
    y = combine(x, (eye - 0.25 * s) @ inv, u, inv)
    # Note [Cayley drift]
    # Unlike QR, polar and exp (which end in an orthonormalisation), the Cayley
    # formula carries x's own rounding error x^T x - I into y unchanged, so over
    # thousands of float32 steps it random-walks past 1e-5 (measured: 2e-3
    # after 3,000 steps at C 10, n 256, k 8). One Newton-Schulz polar step
    # y <- y (3I - y^T y) / 2 squares that error away every step; it commutes
    # with y -> yQ, so the retraction stays basis-equivariant, and it changes
    # y only at rounding level, so the order of agreement with exp is kept.
    # Ill-conditioned items skip the Newton-Schulz step (it converges only for
    # small errors); repair_orthonormality re-orthonormalises them instead.
    well_conditioned = (cond <= default_max_cond(y.dtype))[..., None, None]
    y = combine(y, torch.where(well_conditioned, 1.5 * eye - 0.5 * gram(y, y), eye))
    return repair_orthonormality(y, cond)


@RETRACTIONS.register
def exp(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The exponential map used as a retraction (see :func:`expmap`)."""
    return _expmap(x, u)
