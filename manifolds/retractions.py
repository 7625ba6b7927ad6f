r"""Retractions on the Grassmann manifold.

Every entry has the signature ``retraction(x, u) -> y`` with ``x`` an
orthonormal basis of shape ``(..., n, k)`` and ``u`` a horizontal tangent vector
(:math:`x^T u = 0`) of the same shape; ``y`` is an orthonormal basis of shape
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
``newton_``  ``polar``'s map by Newton-Schulz iterations         2nd order
``schulz``
===========  ================================================  ================

(:math:`S = u^T u`; orders are for the bases as matrices. As subspaces,
``qr`` and ``polar`` both span :math:`x + u` and agree with ``exp`` to second
order.) Each name is a distinct map, with one exception: ``newton_schulz``
computes the map of ``polar`` by another algorithm (matrix products only),
requested by name so that low-precision GPU runs can choose it;
``RETRACTIONS.map_of("newton_schulz") == "polar"``. The former name
``cholesky_qr`` computed the same map as ``qr``; it is still accepted, with a
``FutureWarning``, and resolves to ``qr``.

The in-place methods of :class:`~manifolds.Grassmann` (``retr_``,
``retr_transp_``, ``momentum_step_``) run a chunked kernel for each entry
here; it computes the same map as the entry. ``newton_schulz`` has no kernel:
they call it and copy its result back.
"""

from __future__ import annotations

import math

import torch

from . import checks as _checks
from ._linalg import cholesky_qr as _cholesky_qr
from ._linalg import combine, cos_sinc_sqrt, default_max_cond, gram, repair_orthonormality, sign_fixed_qr, spd_inv_sqrt
from .registry import Registry

__all__ = ["RETRACTIONS", "qr", "polar", "cayley", "exp", "newton_schulz", "expmap"]

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


# Largest ||(x+u)^T (x+u) - I||_F that newton_schulz iterates on; larger steps take polar's route.
_NEWTON_SCHULZ_REACH = 0.5

# A hard ceiling on the iteration count (the bound below needs at most 6, in float64).
_NEWTON_SCHULZ_MAX_ITERATIONS = 8


def _newton_schulz_iterations(reach: float, dtype: torch.dtype) -> int:
    r"""Iterations that ``newton_schulz`` runs for a stack whose largest :math:`\|z^Tz - I\|_F` is ``reach``.

    The fewest (at least 1) after which every singular value is within
    ``finfo(dtype).eps`` of 1, by the worst case over singular values
    sigma^2 in [1 - reach, 1 + reach] of the scalar map s -> s (3 - s^2) / 2.
    """
    # Note [Newton-Schulz iteration count]
    # f(s) = s (3 - s^2) / 2 maps [0, sqrt 3] into [0, 1], is increasing on
    # [0, 1] and decreasing on [1, sqrt 3], with f(1) = 1 and 1 - f(1 - e) =
    # 1.5 e^2 + O(e^3). After the first step every singular value lies in
    # [min(f(lo), f(hi)), 1] and then stays in [f^j(that), 1], so iterating
    # the worst end point is an exact worst case over the spectrum.
    tolerance = torch.finfo(dtype).eps
    low = min(_newton_schulz_scalar(math.sqrt(max(1.0 - reach, 0.0))), _newton_schulz_scalar(math.sqrt(1.0 + reach)))
    count = 1
    while 1.0 - low > tolerance and count < _NEWTON_SCHULZ_MAX_ITERATIONS:
        low, count = _newton_schulz_scalar(low), count + 1
    return count


def _newton_schulz_scalar(s: float) -> float:
    return s * (3.0 - s * s) / 2.0


@RETRACTIONS.register(same_map_as="polar")
def newton_schulz(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    r"""The polar retraction computed by Newton-Schulz iterations (matrix products only).

    The same map as :func:`polar`, :math:`(x+u)\,((x+u)^T(x+u))^{-1/2}`, by
    the iteration

    .. math:: y_0 = x + u, \qquad y_{j+1} = \tfrac12\, y_j\,(3I - y_j^T y_j),

    which converges quadratically to the polar factor of :math:`x + u` when
    every singular value :math:`\sigma` of :math:`x + u` has
    :math:`0 < \sigma^2 < 3`. For orthonormal ``x`` and horizontal ``u``,
    :math:`(x+u)^T(x+u) = I + u^Tu`, so :math:`\sigma^2 = 1 + \sigma_i(u)^2 \ge 1`.
    Each stack is checked through :math:`r = \|(x+u)^T(x+u) - I\|_F`, which
    bounds :math:`|\sigma^2 - 1|` (it is about :math:`\|u\|_2^2` for a
    rank-one step and at most :math:`\|u\|_F^2`):

    * items with :math:`r \le 1/2` (steps up to
      :math:`\|u\|_2 \approx 0.7`, far beyond what optimizers take) get
      the number of iterations that brings the worst-case singular value to
      1 within ``finfo(dtype).eps`` in the worst case over the spectrum (at
      least one, at most 6 in float64, 5 in float32, 3 in bfloat16/float16;
      typical training steps need 2 in float64, 1 or 2 in float32);
    * items beyond it (huge steps, where the iteration would need many more
      steps or diverge) take the eigendecomposition route of :func:`polar`
      (in float32 for 16-bit dtypes, which ``eigh`` does not support), the
      same map computed another way.

    ``newton_schulz`` and ``polar`` compute the same map in exact arithmetic;
    their results differ at rounding level (float64: about ``1e-15``, float32:
    ``1e-6``, bfloat16: ``1e-2``, the dtype's resolution). Both names exist
    because the algorithms behave differently: ``polar`` needs a symmetric
    eigendecomposition (float32/float64 only; slow for many small matrices on
    GPUs), ``newton_schulz`` needs only batched matrix products, which run in
    bfloat16/float16 and on tensor cores, at a cost that grows with the step
    size. It has a name of its own because it was explicitly requested as a
    retraction option, so that a configuration or a sweep can choose the
    algorithm; the registry records that it is the map of
    ``polar`` (``RETRACTIONS.map_of("newton_schulz") == "polar"``).

    Pure and differentiable (the gradient is that of the computed
    iterations). Reading :math:`r` costs one device-to-host sync per call.
    """
    z = x + u
    g = gram(z, z)
    if z.numel() == 0:
        return combine(z, g)
    eye = torch.eye(g.shape[-1], dtype=g.dtype, device=g.device)
    wide = torch.promote_types(g.dtype, torch.float32)
    reach = torch.linalg.matrix_norm(g.detach().to(wide) - eye.to(wide))
    far = ~(reach <= _NEWTON_SCHULZ_REACH)  # NaN counts as far
    worst, any_far = torch.stack([torch.where(far, 0.0, reach).amax(), far.any().to(wide)]).tolist()
    if any_far:
        # Note [Newton-Schulz beyond its reach]
        # Far items are answered by polar below, but they still run through
        # the iterations (one code path for the stack). Scaled by
        # ||g||_F^{-1/2} their singular values lie in (0, 1], where the
        # iteration stays finite, so neither their values nor the zero
        # gradients torch.where sends back through them turn into NaN.
        scale = torch.where(far, torch.linalg.matrix_norm(g.detach()).clamp_min(torch.finfo(g.dtype).tiny).rsqrt(), 1.0)
        z, g = z * scale[..., None, None], g * scale.square()[..., None, None]
    y = combine(z, 1.5 * eye - 0.5 * g)
    for _ in range(_newton_schulz_iterations(worst, z.dtype) - 1):
        y = combine(y, 1.5 * eye - 0.5 * gram(y, y))
    if any_far:
        y = torch.where(far[..., None, None], _polar_in_lapack_dtype(x, u), y).mT.contiguous().mT
    return y


def _polar_in_lapack_dtype(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """:func:`polar`, computed in float32 for dtypes ``eigh`` does not take."""
    if x.dtype in _checks.LAPACK_DTYPES:
        return polar(x, u)
    return polar(x.float(), u.float()).to(x.dtype)
