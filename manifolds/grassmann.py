r"""The Grassmann manifold :math:`\mathrm{Gr}(n, k)` as a :class:`geoopt.Manifold`."""

from __future__ import annotations

from collections.abc import Callable

import geoopt
import torch

from . import _kernel_steps, inplace, landing
from . import checks as _checks
from ._linalg import gram, sign_fixed_qr
from .angles import _logmap
from .distances import _angles
from .errors import ShapeError
from .retractions import RETRACTIONS, _expmap
from .stepping import InPlaceManifold, _check_qr_signs
from .transports import TRANSPORTS

__all__ = ["Grassmann"]

Retraction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Transport = Callable[..., torch.Tensor]


def _tolerance(x: torch.Tensor, atol: float | None) -> float:
    return atol if atol is not None else _checks.orthonormality_tolerance(x.dtype, x.shape[-2])


class Grassmann(InPlaceManifold):
    r"""Grassmann manifold of ``k``-dimensional subspaces of :math:`\mathbb{R}^n`.

    A point is an orthonormal basis ``x`` of shape ``(..., n, k)`` (any number
    of leading batch dims, ``n >= k >= 1``); ``x`` and :math:`xQ` (:math:`Q` in
    :math:`O(k)`) are the same point. Tangent vectors are horizontal: :math:`x^T u = 0`.
    The metric is the canonical one, :math:`\langle u, v\rangle = \operatorname{tr}(u^T v)`,
    so the geodesic distance is :math:`\|\theta\|_2` (principal angles);
    geomstats' projector metric gives :math:`\sqrt2` times that.

    No method forms an ``n x n`` matrix. Results are returned as transposed
    views over ``(..., k, n)`` storage (see the memory-layout note in
    ``manifolds._linalg``).

    The in-place methods (``retr_``, ``retr_transp_``, ``projx_``,
    :meth:`momentum_step_`) are what :class:`~grassmann_cls.RiemannianSGD`
    calls; for every registered retraction they run a chunked kernel that
    computes the same map as the registry entry, and any other retraction
    is called and its result copied back (see :mod:`manifolds.stepping`).

    The constructor, :meth:`random`, :meth:`origin`, :meth:`random_tangent`
    and the ``check_*`` / ``assert_*`` methods validate their arguments. The
    geometry methods (``projx, proju, retr, transp, expmap, logmap, dist``
    and the in-place ones) are what optimizers call every step: they trust
    their inputs (float32/float64 bases of matching shapes on one device) and
    do not check them; use :func:`manifolds.expmap`, :func:`manifolds.logmap`
    or the :data:`~manifolds.DISTANCES` for checked versions.

    Parameters
    ----------
    retraction : str or callable
        A :data:`~manifolds.RETRACTIONS` name or a function ``(x, u) -> y``.
        The default ``qr`` is the sign-fixed QR retraction.
    transport : str or callable
        A :data:`~manifolds.TRANSPORTS` name or a function ``(x, u, y, v) -> w``.

    Examples
    --------
    >>> import torch, geoopt
    >>> from manifolds import Grassmann
    >>> gr = Grassmann(retraction="polar")
    >>> x = gr.random(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> g = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    >>> u = gr.proju(x, 0.3 * g)  # inside the injectivity radius (angles < pi/2)
    >>> y = gr.expmap(x, u)
    >>> bool(torch.allclose(gr.dist(x, y), gr.norm(x, u)))
    True
    """

    name = "Grassmann"
    ndim = 2
    reversible = False

    def __init__(self, retraction: str | Retraction = "qr", transport: str | Transport = "projection"):
        super().__init__()
        self._retraction = RETRACTIONS.resolve(retraction)
        self._transport = TRANSPORTS.resolve(transport)

    @property
    def retraction(self) -> Retraction:
        """The retraction function ``(x, u) -> y`` (a :data:`~manifolds.RETRACTIONS` entry or a callable)."""
        return self._retraction

    @property
    def transport(self) -> Transport:
        """The transport function ``(x, u, y, v) -> w`` (a :data:`~manifolds.TRANSPORTS` entry or a callable)."""
        return self._transport

    @property
    def retraction_name(self) -> str:
        """Registered name of the retraction (or the callable's qualified name)."""
        return RETRACTIONS.name_of(self._retraction)

    @property
    def transport_name(self) -> str:
        """Registered name of the transport (or the callable's qualified name)."""
        return TRANSPORTS.name_of(self._transport)

    def extra_repr(self) -> str:
        return f"retraction={self.retraction_name}, transport={self.transport_name}"

    # --- checks -----------------------------------------------------------
    def _check_shape(self, shape, name):
        if len(shape) < 2:
            return False, f"{name} must have shape (..., n, k); got {tuple(shape)}"
        n, k = shape[-2], shape[-1]
        if not 1 <= k <= n:
            return False, f"{name} must satisfy 1 <= k <= n; got n={n}, k={k}"
        return True, None

    def _check_point_on_manifold(self, x, *, atol=None, rtol=None):
        if not x.is_floating_point():
            return False, f"x must be a floating tensor; got dtype {x.dtype}"
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        err = (gram(x, x) - eye).abs().amax() if x.numel() else x.new_zeros(())
        limit = _tolerance(x, atol)
        if not bool(err <= limit):
            return False, f"x^T x != I: max deviation {float(err):.3g} > {limit:.3g}"
        return True, None

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        if u.shape != x.shape:
            return False, f"u must have the shape of x {tuple(x.shape)}; got {tuple(u.shape)}"
        if not x.is_floating_point() or u.dtype != x.dtype or u.device != x.device:
            return (
                False,
                f"x and u must share a floating dtype and device; got {x.dtype}/{x.device} and {u.dtype}/{u.device}",
            )
        err = gram(x, u).abs().amax() if u.numel() else u.new_zeros(())
        scale = max(1.0, float(u.abs().amax())) if u.numel() else 1.0
        limit = _tolerance(x, atol) * scale
        if not bool(err <= limit):
            return False, f"x^T u != 0: max |x^T u| {float(err):.3g} > {limit:.3g}"
        return True, None

    # --- projections and metric -------------------------------------------
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Orthonormal basis of ``span(x)`` by sign-fixed QR (keeps column 1's direction)."""
        return sign_fixed_qr(x)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Horizontal projection ``u - x (x^T u)``, shape ``(..., n, k)``."""
        return TRANSPORTS.resolve("projection")(None, None, x, u)

    egrad2rgrad = proju

    def inner(self, x, u, v=None, *, keepdim=False):
        """Canonical inner product ``tr(u^T v)`` over the last two dims."""
        v = u if v is None else v
        out = (u * v).sum(dim=(-2, -1), keepdim=keepdim)
        if keepdim:
            return out
        return out.expand(torch.broadcast_shapes(u.shape, v.shape)[:-2]) if out.dim() else out

    def norm(self, x, u, *, keepdim=False):
        """Frobenius norm of the tangent vector ``u``."""
        return torch.linalg.matrix_norm(u, keepdim=keepdim)

    # --- moving around ------------------------------------------------------
    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Apply the configured retraction."""
        return self._retraction(x, u)

    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The true exponential map (see :func:`manifolds.retractions.expmap`)."""
        return _expmap(x, u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The logarithm map (see :func:`manifolds.angles.logmap`)."""
        return _logmap(x, y)

    def transp(self, x, y, v, *, u=None):
        """Transport ``v`` from ``x`` to ``y`` with the configured transport.

        ``u`` (the step with ``y = retr(x, u)``) is used by ``parallel``; when
        omitted it is recovered as ``logmap(x, y)``.
        """
        return self._transport(x, u, y, v)

    def retr_transp(self, x, u, v):
        """Retract ``x`` along ``u`` and transport ``v`` there; returns ``(y, w)``."""
        y = self.retr(x, u)
        return y, self._transport(x, u, y, v)

    def retr_(self, x: torch.Tensor, u: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
        """In place ``x <- retr(x, alpha u)`` (no autograd); ``x``, ``u`` of shape ``(..., n, k)``."""
        return inplace._retract(x, u, alpha, self._retraction, None, check_values=False)

    def retr_transp_(self, x, u, v, *, alpha: float = 1.0):
        """In place ``x <- y = retr(x, alpha u)`` and ``v <- transp(x, y, v)`` (no autograd).

        One fused pass for the ``projection`` transport (``v`` may be ``u``).
        Returns ``(x, v)``.
        """
        if self.transport_name != "projection":
            return super().retr_transp_(x, u, v, alpha=alpha)
        return inplace._retract_transport(x, u, v, alpha, self._retraction, check_values=False)

    def projx_(self, x: torch.Tensor, *, qr: str = "sign_fixed") -> torch.Tensor:
        r"""In place re-orthonormalisation of ``x`` (shape ``(..., n, k)``, no autograd); returns ``x``.

        ``qr="sign_fixed"`` (default): ``x <- projx(x)``, the Q factor of
        :math:`x = QR` with :math:`\operatorname{diag}(R) > 0`, by CholQR2 (see
        :func:`manifolds.inplace.orthonormalize_`); a nearly orthonormal
        ``x`` changes by rounding only.

        ``qr="unsigned"``: ``x <- torch.linalg.qr(x).Q``, Householder QR with
        LAPACK's signs, as the GCR authors' reference optimizer re-orthonormalises.
        The subspace is the same, but LAPACK's :math:`R_{jj}` has the sign
        opposite to the pivot, so on a nearly orthonormal ``x`` every column
        whose diagonal entry is positive is negated.
        """
        if _check_qr_signs(qr) == "unsigned":
            with torch.no_grad():
                return x.copy_(torch.linalg.qr(x).Q)
        return inplace.orthonormalize_(x)

    def momentum_step_(
        self, x, grad, buf, *, lr, momentum, dampening=0.0, nesterov=False, style="transport", reorthonormalize=False
    ):
        """One Riemannian SGD step with momentum, in place (see :mod:`manifolds.stepping`).

        Arguments and result as :meth:`manifolds.stepping.InPlaceManifold.momentum_step_`.
        """
        self.check_momentum_style(style)
        options = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "nesterov": nesterov,
            "style": style,
            "reorthonormalize": reorthonormalize,
        }
        if not _kernel_steps.applies(self._retraction, self.transport_name, x):
            return super().momentum_step_(x, grad, buf, **options)
        with torch.no_grad():
            return _kernel_steps.momentum_step_(self._retraction, x, grad, buf, **options)

    def check_landing(self) -> None:
        """Grassmann bases take :meth:`landing_step_` (no error)."""

    def landing_step_(self, x, grad, buf, *, lr, momentum, dampening=0.0, nesterov=False, attraction=1.0, bound=0.1):
        r"""One landing step with heavy-ball momentum, in place (no retraction; see :mod:`manifolds.landing`).

        With Euclidean gradient :math:`G`, buffer :math:`B \leftarrow \mu B + (1-\tau)G`
        (:math:`B_0 = G`), direction :math:`D = B` (:math:`G + \mu B` with
        Nesterov, :math:`G` without momentum):

        .. math:: x \leftarrow x - \min(\mathrm{lr}, \eta^*)\,\Lambda(x), \qquad
                  \Lambda(x) = D\,x^Tx - x\,D^Tx + \lambda\,x(x^Tx - I),

        with one safe step :math:`\eta^*` per basis
        (:func:`manifolds.landing.safe_step_size`), which keeps
        :math:`\|x^Tx - I\|_F \le` ``bound``. ``x`` need not be orthonormal.

        Parameters
        ----------
        x : torch.Tensor
            Basis, shape ``(..., n, k)``; overwritten.
        grad : torch.Tensor
            Euclidean gradient at ``x``, same shape; never written.
        buf : torch.Tensor or None
            Momentum buffer (same shape), updated in place; ``None`` on the first step.
        lr, momentum, dampening : float
            Largest step size, momentum and dampening, as in ``torch.optim.SGD``.
        nesterov : bool
            Nesterov momentum.
        attraction : float
            :math:`\lambda > 0`, weight of the normal term.
        bound : float
            :math:`\varepsilon \in (0, 1)`, the largest :math:`\|x^Tx - I\|_F` a step may reach.

        Returns
        -------
        torch.Tensor or None
            The momentum buffer (``None`` when ``momentum == 0``).
        """
        return landing.landing_step_(
            x,
            grad,
            buf,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            attraction=attraction,
            bound=bound,
        )

    def transp_follow_retr(self, x, u, v):
        return self.retr_transp(x, u, v)[1]

    def expmap_transp(self, x, u, v):
        y = self.expmap(x, u)
        return y, self._transport(x, u, y, v)

    def transp_follow_expmap(self, x, u, v):
        return self.expmap_transp(x, u, v)[1]

    def dist(self, x, y, *, keepdim=False):
        """Geodesic distance ``||theta||_2`` (principal angles), shape ``(...)``."""
        d = torch.linalg.vector_norm(_angles(x, y), dim=-1)
        d = d.to(torch.promote_types(x.dtype, y.dtype))
        return d[..., None, None] if keepdim else d

    def dist2(self, x, y, *, keepdim=False):
        d2 = _angles(x, y).square().sum(-1).to(torch.promote_types(x.dtype, y.dtype))
        return d2[..., None, None] if keepdim else d2

    # --- sampling -------------------------------------------------------------
    def _parse_size(self, size) -> tuple[int, ...]:
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        size = tuple(_checks.integer("size[i]", s, minimum=0) for s in size)
        ok, reason = self._check_shape(size, "size")
        if not ok:
            raise ShapeError(reason)
        return size

    def _parse_factory(self, size, dtype, device, generator):
        """Checked ``(size, dtype, device, generator)`` of :meth:`random` and :meth:`origin`."""
        size = self._parse_size(size)
        dtype = _checks.dtype("dtype", dtype)
        device = _checks.device("device", device)
        return size, dtype, device, _checks.generator("generator", generator, device)

    def random(self, *size, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Uniform random point (Haar measure), shape ``size = (..., n, k)``.

        Sign-fixed QR of a Gaussian matrix; accepts a ``torch.Generator``.
        ``dtype`` is float32 or float64 (default: torch's default dtype).
        """
        size, dtype, device, generator = self._parse_factory(size, dtype, device, generator)
        gauss = torch.randn(size, dtype=dtype, device=device, generator=generator)
        return geoopt.ManifoldTensor(sign_fixed_qr(gauss), manifold=self)

    random_uniform = random

    def random_tangent(self, x: torch.Tensor, *, generator=None) -> torch.Tensor:
        """Gaussian horizontal tangent vector at ``x`` (row storage, like ``x``)."""
        _checks.basis("x", x)
        self.assert_check_point(x)
        _checks.generator("generator", generator, x.device)
        g = torch.randn(x.mT.shape, dtype=x.dtype, device=x.device, generator=generator)
        return self.proju(x, g.mT)

    def origin(self, *size, dtype=None, device=None, seed=None) -> torch.Tensor:
        """The first ``k`` columns of the identity, broadcast to ``size = (..., n, k)``."""
        size, dtype, device, _ = self._parse_factory(size, dtype, device, None)
        n, k = size[-2:]
        eye = torch.eye(k, n, dtype=dtype, device=device)
        return geoopt.ManifoldTensor(eye.expand(*size[:-2], k, n).contiguous().mT, manifold=self)
