r"""In-place optimizer steps: the methods :class:`~grassmann_cls.RiemannianSGD` calls.

:class:`InPlaceManifold` is a :class:`geoopt.Manifold` with four in-place
methods, ``retr_``, ``retr_transp_``, ``projx_`` and :meth:`~InPlaceManifold.momentum_step_`.
Their implementations here use only the out-of-place geoopt API
(``egrad2rgrad``, ``proju``, ``retr``, ``retr_transp``, ``projx``): the result
is computed and copied back. :class:`~manifolds.Grassmann` overrides them with
chunked kernels where its retraction has one; every other retraction (a
callable, a newly registered entry) and :class:`~manifolds.PaddedGrassmann`
take the paths here.

Two momentum styles (:data:`MOMENTUM_STYLES`), with Euclidean gradient
:math:`D` at :math:`x`, momentum :math:`\mu`, dampening :math:`\tau`, step
size :math:`\eta`, retraction :math:`R`, transport :math:`\mathcal{T}` and
:math:`P_x = I - xx^T` (the manifold's ``egrad2rgrad``):

``"transport"``: a tangent buffer moved by the transport,

.. math:: G = P_x D, \quad M \leftarrow \mu M + (1-\tau) G \;(M_0 = G), \quad
          x' = R_x(-\eta M), \quad M \leftarrow \mathcal{T}_{x \to x'} M.

``"paper"``: a raw Euclidean buffer projected when used (the manifold's
transport is never used),

.. math:: B \leftarrow \mu B + (1-\tau) D \;(B_0 = D), \quad x' = R_x(-\eta P_x B).

With ``nesterov=True`` the direction is :math:`G + \mu M` or :math:`D + \mu B`,
as in ``torch.optim.SGD``.
"""

from __future__ import annotations

import geoopt
import torch

from . import checks as _checks
from .errors import NotOnManifoldError, OptionError, ShapeError

__all__ = ["MOMENTUM_STYLES", "QR_SIGNS", "InPlaceManifold"]

MOMENTUM_STYLES = ("transport", "paper")
"""Accepted ``style`` values of :meth:`InPlaceManifold.momentum_step_`."""

QR_SIGNS = ("sign_fixed", "unsigned")
"""Accepted ``qr`` values of :meth:`InPlaceManifold.projx_`: the sign convention of the QR factor."""


def _check_qr_signs(qr: str) -> str:
    """``qr`` if it is one of :data:`QR_SIGNS`, else :class:`~manifolds.errors.OptionError`."""
    if qr not in QR_SIGNS:
        raise OptionError(f"qr must be one of {', '.join(map(repr, QR_SIGNS))}; got {qr!r}")
    return qr


class InPlaceManifold(geoopt.Manifold):
    """A :class:`geoopt.Manifold` that optimizers step in place through public methods.

    Subclasses implement the geoopt API and ``transport_name`` (the
    registered name of their vector transport); the in-place methods then
    work as documented in :mod:`manifolds.stepping`.
    """

    @property
    def transport_name(self) -> str:
        """Registered name of the vector transport (``"projection"`` unless a subclass says otherwise)."""
        return "projection"

    # --- checks: geoopt's (ok, reason) form refuses non-tensors first (geoopt reads .shape);
    # the assert_ form raises. Subclasses give _check_shape, _check_point_on_manifold
    # and _check_vector_on_tangent.
    def check_point(self, x: torch.Tensor, *, explain=False):
        _checks.tensor("x", x, dtypes=None)
        return super().check_point(x, explain=explain)

    def check_vector(self, u: torch.Tensor, *, explain=False):
        _checks.tensor("u", u, dtypes=None)
        return super().check_vector(u, explain=explain)

    def check_point_on_manifold(self, x: torch.Tensor, *, explain=False, atol=1e-5, rtol=1e-5):
        _checks.tensor("x", x, dtypes=None)
        return super().check_point_on_manifold(x, explain=explain, atol=atol, rtol=rtol)

    def check_vector_on_tangent(self, x, u, *, ok_point=False, explain=False, atol=1e-5, rtol=1e-5):
        _checks.tensor("x", x, dtypes=None)
        _checks.tensor("u", u, dtypes=None)
        return super().check_vector_on_tangent(x, u, ok_point=ok_point, explain=explain, atol=atol, rtol=rtol)

    def assert_check_point(self, x: torch.Tensor) -> None:
        """Raise :class:`~manifolds.errors.ShapeError` unless ``x`` has a valid shape."""
        _checks.tensor("x", x, dtypes=None)
        ok, reason = self._check_shape(x.shape, "x")
        if not ok:
            raise ShapeError(f"x is not a valid tensor for {self.name}: {reason}")

    def assert_check_vector(self, u: torch.Tensor) -> None:
        """Raise :class:`~manifolds.errors.ShapeError` unless ``u`` has a valid shape."""
        _checks.tensor("u", u, dtypes=None)
        ok, reason = self._check_shape(u.shape, "u")
        if not ok:
            raise ShapeError(f"u is not a valid tensor for {self.name}: {reason}")

    def assert_check_point_on_manifold(self, x: torch.Tensor, *, atol=1e-5, rtol=1e-5) -> None:
        """Raise :class:`~manifolds.errors.NotOnManifoldError` unless ``x`` is a point of this manifold within ``atol``."""
        self.assert_check_point(x)
        ok, reason = self._check_point_on_manifold(x, atol=atol, rtol=rtol)
        if not ok:
            raise NotOnManifoldError(f"x is not a point of {self.name}: {reason}")

    def assert_check_vector_on_tangent(self, x, u, *, ok_point=False, atol=1e-5, rtol=1e-5) -> None:
        """Raise :class:`~manifolds.errors.NotOnManifoldError` unless ``u`` is horizontal at ``x``."""
        if not ok_point:
            self.assert_check_point_on_manifold(x, atol=atol, rtol=rtol)
        self.assert_check_vector(u)
        ok, reason = self._check_vector_on_tangent(x, u, atol=atol, rtol=rtol)
        if not ok:
            raise NotOnManifoldError(f"u is not a tangent vector of {self.name} at x: {reason}")

    def check_momentum_style(self, style: str) -> None:
        """Raise :class:`~manifolds.errors.OptionError` unless this manifold can honour ``style``.

        ``"paper"`` never transports the buffer, so it is refused with any
        transport other than ``"projection"`` (which it would ignore).
        """
        if style not in MOMENTUM_STYLES:
            raise OptionError(f"momentum style must be one of {', '.join(map(repr, MOMENTUM_STYLES))}; got {style!r}")
        if style == "paper" and self.transport_name != "projection":
            raise OptionError(
                f"momentum style 'paper' never transports its buffer, so transport={self.transport_name!r} "
                "would be ignored; use transport='projection' or the 'transport' momentum style"
            )

    def check_landing(self) -> None:
        """Raise :class:`~manifolds.errors.OptionError` unless this manifold takes :meth:`landing_step_`.

        Here: always (a manifold opts in by overriding both methods).
        """
        raise OptionError(
            f"{type(self).__name__} cannot take landing steps (its points are not plain orthonormal bases); "
            "use a retraction-based optimizer such as RiemannianSGD"
        )

    def landing_step_(self, x, grad, buf, **options):
        """One retraction-free landing step in place; see :meth:`manifolds.Grassmann.landing_step_`."""
        raise NotImplementedError(f"{type(self).__name__}.landing_step_ is not implemented")

    def retr_(self, x: torch.Tensor, u: torch.Tensor, *, alpha: float = 1.0) -> torch.Tensor:
        """In place ``x <- retr(x, alpha u)``; ``x``, ``u`` of shape ``(..., n, k)``. Returns ``x``."""
        with torch.no_grad():
            return x.copy_(self.retr(x, u * alpha))

    def retr_transp_(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, alpha: float = 1.0):
        """In place ``x <- y = retr(x, alpha u)`` and ``v <- transp(x, y, v)``; ``v`` may be ``u``.

        All tensors have shape ``(..., n, k)``. Returns ``(x, v)``.
        """
        with torch.no_grad():
            y, w = self.retr_transp(x, u * alpha, v)
            x.copy_(y)
            v.copy_(w)
        return x, v

    def projx_(self, x: torch.Tensor, *, qr: str = "sign_fixed") -> torch.Tensor:
        """In place ``x <- projx(x)`` (re-orthonormalisation), ``x`` of shape ``(..., n, k)``. Returns ``x``.

        ``qr`` is the sign convention of the QR factor (:data:`QR_SIGNS`):
        ``"sign_fixed"`` is :meth:`projx`; ``"unsigned"`` (the Q factor of
        ``torch.linalg.qr``, whose columns may come out negated) is offered by
        manifolds that override this method (:class:`~manifolds.Grassmann`)
        and refused here.
        """
        _check_qr_signs(qr)
        if qr != "sign_fixed":
            raise OptionError(f"{type(self).__name__}.projx_ offers qr='sign_fixed' only; got qr={qr!r}")
        with torch.no_grad():
            return x.copy_(self.projx(x))

    def momentum_step_(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        buf: torch.Tensor | None,
        *,
        lr: float,
        momentum: float,
        dampening: float = 0.0,
        nesterov: bool = False,
        style: str = "transport",
        reorthonormalize: bool = False,
    ) -> torch.Tensor | None:
        """One Riemannian SGD step with momentum, in place (see :mod:`manifolds.stepping`).

        Parameters
        ----------
        x : torch.Tensor
            Point, shape ``(..., n, k)``; overwritten by the new point.
        grad : torch.Tensor
            Euclidean gradient at ``x``, same shape; never written.
        buf : torch.Tensor or None
            Momentum buffer, same shape, updated in place; ``None`` on the
            first step (a new buffer is made).
        lr, momentum, dampening : float
            Step size, momentum factor and dampening, as in ``torch.optim.SGD``.
        nesterov : bool
            Nesterov momentum.
        style : {"transport", "paper"}
            Momentum style; see :meth:`check_momentum_style`.
        reorthonormalize : bool
            End with ``x <- projx(x)`` (and, for ``"transport"``, the buffer
            projected onto the new point).

        Returns
        -------
        torch.Tensor or None
            The momentum buffer (``None`` when ``momentum == 0``). Its
            contents are only meaningful to later calls of this method.
        """
        self.check_momentum_style(style)
        with torch.no_grad():
            if style == "paper":
                buf = _accumulate(buf, grad, momentum, dampening, x)
                direction = grad if buf is None else (grad + momentum * buf if nesterov else buf)
                self.retr_(x, self.proju(x, direction), alpha=-lr)
            else:
                rgrad = self.egrad2rgrad(x, grad)
                buf = _accumulate(buf, rgrad, momentum, dampening, x)
                if buf is None:
                    self.retr_(x, rgrad, alpha=-lr)
                else:
                    self.retr_transp_(x, rgrad.add_(buf, alpha=momentum) if nesterov else buf, buf, alpha=-lr)
            if reorthonormalize:
                self.projx_(x)
                if buf is not None and style == "transport":
                    buf.copy_(self.proju(x, buf))
        return buf


def _accumulate(buf, first, momentum: float, dampening: float, like: torch.Tensor):
    """``buf <- mu buf + (1 - tau) first`` in place; a copy of ``first`` (laid out like ``like``) if ``buf`` is None."""
    if momentum == 0:
        return None
    if buf is None:
        return torch.empty_like(like, memory_format=torch.preserve_format).copy_(first)
    return buf.mul_(momentum).add_(first, alpha=1 - dampening)
