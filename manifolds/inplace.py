r"""In-place and preallocated-output geometry for optimizers (no autograd).

An optimizer step on ``C x n x k`` bases is memory-bound: a fresh ``(C, n, k)``
output costs several elementwise passes in page faults alone, and every
unfused product streams the whole stack again. These functions write into
tensors the caller owns (``out=``, or the inputs themselves) and work through
the stack in cache-sized chunks.
They compute the same maps as the registry entries to rounding (a retraction
without a kernel is called and its result copied back), are not
differentiable (they refuse tensors that require grad while grad mode is on:
call them under ``torch.no_grad()``), and are fastest when the bases are
stored as transposed views over contiguous ``(..., k, n)`` memory (see the
memory-layout note in ``manifolds._linalg``).

Examples
--------
One Riemannian momentum step with projection transport, no allocation of
``(C, n, k)`` tensors besides the state:

>>> import torch
>>> from manifolds import Grassmann, inplace
>>> gr = Grassmann()
>>> g = torch.Generator().manual_seed(0)
>>> x = gr.random(4, 6, 2, generator=g)
>>> grad = torch.randn(4, 6, 2, generator=g)
>>> buf = torch.zeros_like(x)
>>> _ = inplace.project(x, grad, out=buf, alpha=1.0, beta=0.9)  # buf <- 0.9 buf + P_x grad
>>> _ = inplace.retract_transport_(x, buf, buf, alpha=-0.1)     # x <- R_x(-0.1 buf), buf moved
>>> bool(torch.allclose(x.mT @ x, torch.eye(2).expand(4, 2, 2), atol=1e-5))
True
>>> bool((x.mT @ buf).abs().max() < 1e-5)
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _fused
from . import checks as _checks
from ._linalg import sign_fixed_qr as _projx
from .errors import ManifoldTypeError, OptionError, ShapeError
from .retractions import RETRACTIONS
from .transports import projection as _projection_transport

__all__ = [
    "retract_",
    "retract_transport_",
    "project",
    "momentum_step_",
    "orthonormalize_",
    "principal_angles",
    "empty_like_rows",
    "kernel_name",
    "MOMENTUM_MODES",
]


def empty_like_rows(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor shaped like ``x`` stored as ``(..., k, n)`` rows.

    Parameters
    ----------
    x : torch.Tensor
        Shape ``(..., n, k)``.

    Returns
    -------
    torch.Tensor
        Shape ``(..., n, k)``, a transposed view over contiguous ``(..., k, n)`` memory.
    """
    return torch.empty(x.mT.shape, dtype=x.dtype, device=x.device).mT


def _check(name: str, *tensors: torch.Tensor) -> None:
    # Metadata only (no device sync): these run on every optimizer step.
    for t in tensors:
        _checks.tensor(f"{name}'s tensors", t)
    ref = tensors[0]
    if ref.dim() < 2:
        raise ShapeError(f"{name} expects tensors of shape (..., n, k); got {tuple(ref.shape)}")
    n, k = ref.shape[-2:]
    if not 1 <= k <= n:
        raise ShapeError(f"{name} expects 1 <= k <= n; got k={k}, n={n} (shape {tuple(ref.shape)})")
    for t in tensors:
        if t.shape != ref.shape:
            raise ShapeError(f"{name} expects tensors of one shape; got {tuple(ref.shape)} and {tuple(t.shape)}")
        if t.dtype != ref.dtype or t.device != ref.device:
            raise ManifoldTypeError(
                f"{name} expects one dtype and device; got {ref.dtype}/{ref.device} and {t.dtype}/{t.device}"
            )
        if torch.is_grad_enabled() and t.requires_grad:
            raise ManifoldTypeError(
                f"{name} is not differentiable and got a tensor that requires grad; call it under torch.no_grad()"
            )


def _writable(name: str, what: str, t: torch.Tensor) -> None:
    # An expanded view (stride 0 over a dim of size > 1) has elements sharing memory: it cannot be written.
    if any(stride == 0 and size > 1 for size, stride in zip(t.shape, t.stride())):
        raise ShapeError(
            f"{name} writes into {what}, which must not be an expanded (broadcast) view; "
            f"got shape {tuple(t.shape)} with strides {t.stride()}; pass a .clone()"
        )


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are the same tensor or start at the same address (an empty one never does)."""
    return a is b or bool(b.numel() and a.data_ptr() == b.data_ptr())


def kernel_name(retraction: str | Callable) -> str | None:
    """The chunked kernel serving ``retraction`` (a registry entry), or ``None`` if it has none."""
    fn = RETRACTIONS.resolve(retraction)
    name = RETRACTIONS.name_of(fn)
    return name if name in _fused.FUSED_RETRACTIONS and RETRACTIONS.resolve(name) is fn else None


def _fast_dtype(t: torch.Tensor) -> bool:
    return t.dtype in _checks.LAPACK_DTYPES


def retract_(
    x: torch.Tensor,
    u: torch.Tensor,
    *,
    alpha: float = 1.0,
    retraction: str | Callable = "qr",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Retract in place: ``out <- R_x(alpha u)`` (``out`` defaults to ``x`` itself).

    Parameters
    ----------
    x : torch.Tensor
        Orthonormal basis, shape ``(..., n, k)``; overwritten when ``out`` is ``None``.
    u : torch.Tensor
        Horizontal tangent vector at ``x``, shape ``(..., n, k)``; never written.
    alpha : float
        Step scale, so that ``alpha u`` is never materialised.
    retraction : str or callable
        A :data:`~manifolds.RETRACTIONS` name or a function ``(x, u) -> y``.
        Every registered name runs a chunked kernel computing the same map
        (``qr``'s is Cholesky-QR, with Householder QR for ill-conditioned
        items); other functions are called and their result copied.
    out : torch.Tensor, optional
        Where to write the result, shape ``(..., n, k)``; may be ``x``, not ``u``.

    Returns
    -------
    torch.Tensor
        ``out`` (or ``x``), holding an orthonormal basis.

    Raises
    ------
    ShapeError
        If the tensors are not ``(..., n, k)`` with ``1 <= k <= n`` and one shape, or ``out`` is ``u``.
    ManifoldTypeError
        If a tensor is not float32/float64, they differ in dtype or device, or one requires grad.
    NonFiniteError
        If ``u`` holds NaN or Inf (one read of ``u``).
    """
    return _retract(x, u, alpha, retraction, out, check_values=True)


def _retract(x, u, alpha, retraction, out, *, check_values: bool) -> torch.Tensor:
    # check_values=False: the optimizer / Grassmann.retr_ hot path (no device sync).
    out = x if out is None else out
    _check("retract_", x, u, out)
    _writable("retract_", "out (or x)", out)
    if check_values:
        _checks.finite(u=u)
    if _shares_memory(out, u):
        raise ShapeError("retract_ cannot write its result into u; pass out=x or a separate tensor")
    name = kernel_name(retraction)
    with torch.no_grad():
        if name is None or not _fast_dtype(x):
            return out.copy_(RETRACTIONS.resolve(retraction)(x, u * alpha))
        target = _fused.row_view(out)
        rows = target if target is not None else _fused.rows(empty_like_rows(out))
        _fused.retract_rows(name, _fused.rows(x), _fused.rows(u), float(alpha), rows)
        if target is None:
            out.copy_(rows.view(out.mT.shape).mT)
    return out


def retract_transport_(
    x: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    *,
    alpha: float = 1.0,
    retraction: str | Callable = "qr",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Retract ``x`` along ``alpha u`` and transport ``v`` there by projection, in place.

    .. math:: x \leftarrow y = R_x(\alpha u), \qquad v \leftarrow (I - y y^T)\, v .

    ``v`` may be ``u`` (the momentum buffer stepped along and then moved).
    With a chunked retraction (see :func:`retract_`) both updates happen in
    one pass over memory.

    Parameters
    ----------
    x : torch.Tensor
        Orthonormal basis, shape ``(..., n, k)``; overwritten by ``y``.
    u : torch.Tensor
        Horizontal tangent vector at ``x``, shape ``(..., n, k)``.
    v : torch.Tensor
        Tangent vector at ``x``, shape ``(..., n, k)``; overwritten by its transport.
    alpha : float
        Step scale.
    retraction : str or callable
        As in :func:`retract_`.

    Returns
    -------
    tuple of torch.Tensor
        ``(x, v)`` after the update.

    Raises
    ------
    ShapeError
        If the tensors are not ``(..., n, k)`` with ``1 <= k <= n`` and one shape.
    ManifoldTypeError
        If a tensor is not float32/float64, they differ in dtype or device, or one requires grad.
    NonFiniteError
        If ``u`` holds NaN or Inf (one read of ``u``).
    """
    return _retract_transport(x, u, v, alpha, retraction, check_values=True)


def _retract_transport(x, u, v, alpha, retraction, *, check_values: bool):
    # check_values=False: the Grassmann.retr_transp_ hot path (no device sync).
    _check("retract_transport_", x, u, v)
    _writable("retract_transport_", "x", x)
    _writable("retract_transport_", "v", v)
    if check_values:
        _checks.finite(u=u)
    name = kernel_name(retraction)
    xr, vr = _fused.row_view(x), _fused.row_view(v)
    with torch.no_grad():
        if name is None or not _fast_dtype(x) or xr is None or vr is None:
            step = u * alpha
            y = RETRACTIONS.resolve(retraction)(x, step)
            v.copy_(_projection_transport(x, step, y, v))
            return x.copy_(y), v
        _fused.retract_rows(name, xr, _fused.rows(u) if u is not v else vr, float(alpha), xr, vr)
    return x, v


def project(
    x: torch.Tensor,
    v: torch.Tensor,
    *,
    out: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    transport_out: bool = False,
) -> torch.Tensor:
    r"""Horizontal projection accumulated into ``out``: ``out <- beta out + alpha (I - x x^T) v``.

    With ``beta = 0`` the old contents of ``out`` are ignored (``out = v``
    projects in place). ``beta = momentum`` and ``alpha = 1 - dampening``
    update a momentum buffer from a Euclidean gradient in one pass. With
    ``transport_out=True`` the old ``out`` is projected as well,
    ``out <- (I - x x^T)(beta out + alpha v)``: a tangent vector of a nearby
    basis is carried to ``x`` by the projection transport and accumulated in
    the same pass (the projection is linear, so this equals transporting
    ``out`` first and adding ``alpha (I - x x^T) v``).

    Parameters
    ----------
    x : torch.Tensor
        Orthonormal basis, shape ``(..., n, k)``.
    v : torch.Tensor
        Any matrix of shape ``(..., n, k)`` (e.g. a Euclidean gradient); written only if ``out is v``.
    out : torch.Tensor, optional
        Shape ``(..., n, k)``; a new row-stored tensor when ``None``.
    alpha, beta : float
        Scales of the projection and of the old ``out``.
    transport_out : bool
        Project the old ``out`` too (needs ``out``).

    Returns
    -------
    torch.Tensor
        ``out``, horizontal at ``x`` when ``beta = 0``, ``transport_out`` is set or the old ``out`` was.

    Raises
    ------
    ShapeError
        If the tensors are not ``(..., n, k)`` with ``1 <= k <= n`` and one shape.
    ManifoldTypeError
        If a tensor is not float32/float64, they differ in dtype or device, or one requires
        grad, or ``transport_out`` is not a bool.
        Values are not read (optimizers call this every step).
    """
    if not isinstance(transport_out, bool):
        raise ManifoldTypeError(f"project: transport_out must be a bool; got {type(transport_out).__name__}")
    if out is None:
        _check("project", x, v)
        out = empty_like_rows(v)
        beta, transport_out = 0.0, False
    else:
        _check("project", x, v, out)
        _writable("project", "out", out)
    if v is out:
        transport_out = False  # (I - x x^T)((beta + alpha) v) is the plain projection
    with torch.no_grad():
        target = _fused.row_view(out)
        if target is None or not _fast_dtype(x):
            if transport_out:
                combined = _fused.accumulate_(out, v, beta, alpha)
                return combined.copy_(_projection_transport(None, None, x, combined))
            projected = _projection_transport(None, None, x, v)
            return out.mul_(beta).add_(projected, alpha=alpha) if beta else out.copy_(projected * alpha)
        source = target if v is out else _fused.rows(v)
        _fused.project_rows(_fused.rows(x), source, target, float(alpha), float(beta), whole=transport_out)
    return out


MOMENTUM_MODES = ("transport", "paper")
"""Modes of :func:`momentum_step_` (the styles of :meth:`manifolds.Grassmann.momentum_step_`)."""


def momentum_step_(
    x: torch.Tensor,
    grad: torch.Tensor,
    buf: torch.Tensor,
    *,
    lr: float,
    momentum: float,
    dampening: float = 0.0,
    mode: str = "transport",
    retraction: str | Callable = "qr",
) -> torch.Tensor:
    r"""One Riemannian SGD step with momentum, in place: ``x`` and ``buf`` are updated.

    ``mode="transport"``: ``buf <- (I - x x^T)(momentum buf + (1 - dampening) grad)``,
    then ``x <- R_x(-lr buf)``. ``buf`` is a tangent vector of the basis
    before the previous step; projecting it onto ``x`` is its projection
    transport, so this is the transport-momentum step with the transport
    done one step late, together with the gradient's projection.
    ``mode="paper"``: ``buf <- momentum buf + (1 - dampening) grad`` (a raw
    Euclidean buffer), then ``x <- R_x(-lr (I - x x^T) buf)``.
    Either way the result equals :func:`project` followed by
    :func:`retract_`, computed chunk by chunk so that ``x`` and ``buf`` are
    read from memory once.

    Parameters
    ----------
    x : torch.Tensor
        Orthonormal bases, shape ``(..., n, k)``; overwritten.
    grad : torch.Tensor
        Euclidean gradient at ``x``, same shape; never written.
    buf : torch.Tensor
        Momentum buffer, same shape; overwritten.
    lr, momentum, dampening : float
        Step size, momentum factor and dampening, as in ``torch.optim.SGD``.
    mode : {"transport", "paper"}
        Which momentum (see above).
    retraction : str or callable
        A :data:`~manifolds.RETRACTIONS` name or a function ``(x, u) -> y``,
        used in both modes.

    Returns
    -------
    torch.Tensor
        ``x``, holding the new orthonormal bases.

    Raises
    ------
    ShapeError
        If the tensors are not ``(..., n, k)`` with ``1 <= k <= n`` and one
        shape, or two of them share memory.
    ManifoldTypeError
        If a tensor is not float32/float64, they differ in dtype or device, or one requires
        grad, or ``lr``, ``momentum`` or ``dampening`` is not a real number.
    OptionError
        If ``mode`` is unknown or a scalar is not finite.
        Tensor values are not read (optimizers call this every step).
    """
    _check("momentum_step_", x, grad, buf)
    _writable("momentum_step_", "x", x)
    _writable("momentum_step_", "buf", buf)
    if mode not in MOMENTUM_MODES:
        raise OptionError(f"momentum_step_: mode must be one of {MOMENTUM_MODES}; got {mode!r}")
    for label, value in (("lr", lr), ("momentum", momentum), ("dampening", dampening)):
        _checks.real(label, value)
    if _shares_memory(x, grad) or _shares_memory(x, buf) or _shares_memory(grad, buf):
        raise ShapeError("momentum_step_ needs x, grad and buf in separate memory")
    name = kernel_name(retraction)
    xr, gr, br = _fused.row_view(x), _fused.row_view(grad), _fused.row_view(buf)
    with torch.no_grad():
        if name is None or not _fast_dtype(x) or xr is None or br is None:
            if mode == "paper":
                _fused.accumulate_(buf, grad, momentum, 1 - dampening)
                step = project(x, buf)
                return _retract(x, step, -lr, retraction, None, check_values=False)
            project(x, grad, out=buf, alpha=1 - dampening, beta=momentum, transport_out=True)
            return _retract(x, buf, -lr, retraction, None, check_values=False)
        _fused.momentum_step_rows(
            mode,
            name,
            xr,
            gr if gr is not None else _fused.rows(grad),
            br,
            float(lr),
            float(momentum),
            float(dampening),
        )
    return x


def orthonormalize_(x: torch.Tensor, *, out: torch.Tensor | None = None) -> torch.Tensor:
    r"""Re-orthonormalise in place: ``out <- qf(x)``, the Q factor of ``x = QR`` with ``diag(R) > 0``.

    The same matrix as sign-fixed Householder QR (to rounding), by two
    Cholesky-QR passes per chunk (CholQR2; Householder QR for items whose
    Gram matrix is not numerically positive definite), at about a third of
    Householder's cost on ``(1000, 2048, 8)`` stacks.

    Parameters
    ----------
    x : torch.Tensor
        Full-rank matrices of shape ``(..., n, k)``; overwritten when ``out`` is ``None``.
    out : torch.Tensor, optional
        Where to write the result, shape ``(..., n, k)``.

    Returns
    -------
    torch.Tensor
        ``out`` (or ``x``).

    Raises
    ------
    ShapeError
        If the tensors are not ``(..., n, k)`` with ``1 <= k <= n`` and one shape.
    ManifoldTypeError
        If a tensor is not float32/float64, they differ in dtype or device, or one requires grad.
        Values are not read (optimizers call this every step).
    """
    out = x if out is None else out
    _check("orthonormalize_", x, out)
    _writable("orthonormalize_", "out (or x)", out)
    with torch.no_grad():
        target = _fused.row_view(out)
        if target is None or not _fast_dtype(x):
            return out.copy_(_projx(x))
        _fused.orthonormalize_all_rows(_fused.rows(x), target)
    return out


def principal_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Principal angles between orthonormal bases of one shape, in float64 (not differentiable).

    The angles of :func:`manifolds.principal_angles` for bases of equal
    ``(n, k)``, computed by a chunked kernel: only the ``n``-long products
    run in the input precision (each item is read from memory once), the
    ``k x k`` work runs in float64. On float32 stacks it is faster than the
    differentiable function (see the benchmarks page). On float32 bases the angles are
    as accurate as that function's (absolute error about ``n * eps``, tiny
    and near-:math:`\pi/2` angles included); on float64 bases too, except
    that an angle below about ``1e-7`` in a pair whose largest angle is much
    larger is accurate only to about ``1e-8``. Use it where no gradient is
    needed; it refuses tensors that require grad while grad mode is on.

    Parameters
    ----------
    x : torch.Tensor
        Orthonormal bases of shape ``(..., n, k)``, float32 or float64.
    y : torch.Tensor
        Orthonormal bases of shape ``(..., n, k)`` with batch dims that
        broadcast with those of ``x``; same dtype and device as ``x``.
        Orthonormality is not checked (for other bases of full column rank
        use :func:`manifolds.principal_angles`, which orthonormalises them).

    Returns
    -------
    torch.Tensor
        Angles in ascending order in :math:`[0, \pi/2]`, shape ``(..., k)``
        (the broadcast batch dims), dtype float64.

    Raises
    ------
    ShapeError
        If the bases are not ``(..., n, k)`` with ``1 <= k <= n``, differ in
        ``(n, k)`` or have batch dims that do not broadcast.
    ManifoldTypeError
        If a tensor is not float32/float64, they differ in dtype or device, or one requires grad.
    NonFiniteError
        If ``x`` or ``y`` holds NaN or Inf (one read of each).

    Examples
    --------
    >>> import torch
    >>> from manifolds import inplace
    >>> x = torch.eye(3)[:, :1]
    >>> y = torch.tensor([[1.0], [1.0], [0.0]]) / 2 ** 0.5
    >>> inplace.principal_angles(x, y)
    tensor([0.7854], dtype=torch.float64)
    """
    batch = _checks.pair("x", x, "y", y)
    for t in (x, y):
        if torch.is_grad_enabled() and t.requires_grad:
            raise ManifoldTypeError(
                "principal_angles is not differentiable and got a tensor that requires grad; "
                "call it under torch.no_grad() or use manifolds.principal_angles"
            )
    _checks.finite(x=x, y=y)
    n, k = x.shape[-2:]
    with torch.no_grad():
        theta = _fused.angles_rows(_fused.rows(x.expand(*batch, n, k)), _fused.rows(y.expand(*batch, n, k)))
    return theta.view(*batch, k)
