r"""Classes with different subspace dimensions: zero-padded Grassmann bases.

A point of :class:`PaddedGrassmann` stores ``C`` bases of different
dimensions ``k_c`` in one ``(..., C, n, k_max)`` tensor, zero in the padded
columns; every operation acts on each class as on :math:`\mathrm{Gr}(n, k_c)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import geoopt
import torch

from . import checks as _checks
from ._linalg import gram, sign_fixed_qr
from .angles import _logmap
from .angles import _principal_angles as principal_angles
from .errors import ManifoldTypeError, OptionError, ShapeError
from .grassmann import Grassmann
from .retractions import _expmap
from .stepping import InPlaceManifold

# Note [variable k by zero padding]
# Class c owns a point of Gr(n, k_c). All C bases are stored in one
# (C, n, k_max) tensor whose columns k_c..k_max-1 are exactly zero, so the head
# still computes its logits with one matmul against a (C*k_max, n) weight and a
# norm over groups of k_max: the zero columns add nothing to ||S_c^T x||, and
# their Euclidean gradient x (x^T S_c)_j / ||S_c^T x|| is exactly zero.
#
# The zero columns must never take part in the geometry. Re-using the plain
# Gr(n, k_max) geometry on k_max orthonormal columns with a mask would be wrong:
# its horizontal projection (I - x x^T) also removes the gradient along the
# masked columns, so the active subspace could never turn towards them.
# Instead every operation embeds the bases in R^(n + k_max): padded column j
# becomes the unit vector e_(n+j) of an extra coordinate, tangent vectors get
# zero extra rows. The embedded point is orthonormal, the embedded tangent is
# horizontal, and their Gram matrices are block diagonal, so every retraction,
# transport and the exp/log maps of the registry act on the active block
# exactly as they act on Gr(n, k_c) (up to rounding), whatever their formula.
# The result is cut back to n rows and multiplied by the mask. The class
# holds a plain Grassmann for the retraction and transport; the in-place
# methods are the generic ones of InPlaceManifold (computed out of place
# through the embedding, so the padded columns stay zero).

__all__ = ["PaddedGrassmann"]


class PaddedGrassmann(InPlaceManifold):
    r"""Product of :math:`\mathrm{Gr}(n, k_c)`, ``c = 1..C``, as zero-padded bases.

    A point is a tensor of shape ``(..., C, n, k_max)`` whose class-``c`` slice
    has ``k_c`` orthonormal columns followed by ``k_max - k_c`` zero columns:

    .. math:: x_c^T x_c = \operatorname{diag}(\underbrace{1, \dots, 1}_{k_c},
              0, \dots, 0).

    Tangent vectors have the same shape, are horizontal (:math:`x^T u = 0`)
    and are zero in the padded columns. Metric, retraction, transport, exp and
    log are those of each :math:`\mathrm{Gr}(n, k_c)`. The in-place methods
    that :class:`~grassmann_cls.RiemannianSGD` calls (``retr_``,
    ``retr_transp_``, ``projx_``, ``momentum_step_``) keep the padded columns
    zero.

    Parameters
    ----------
    subspace_dims : sequence of int
        ``(k_1, ..., k_C)``, each ``>= 1``.
    retraction, transport : str or callable
        As for :class:`manifolds.Grassmann`.
    """

    name = "PaddedGrassmann"
    ndim = 3
    reversible = False

    def __init__(self, subspace_dims: Sequence[int], retraction="qr", transport="projection"):
        super().__init__()
        self.grassmann = Grassmann(retraction=retraction, transport=transport)
        if isinstance(subspace_dims, (str, bytes)) or not hasattr(subspace_dims, "__len__"):
            raise ManifoldTypeError(f"subspace_dims must be a sequence of ints; got {type(subspace_dims).__name__}")
        dims = tuple(_checks.integer("subspace_dims[c]", k, minimum=1) for k in subspace_dims)
        if not dims:
            raise OptionError(f"subspace_dims must be a non-empty sequence of ints >= 1; got {subspace_dims!r}")
        self.subspace_dims = dims
        self.max_dim = max(dims)
        self._masks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def retraction(self):
        """The retraction function ``(x, u) -> y`` applied to each class."""
        return self.grassmann.retraction

    @property
    def transport(self):
        """The transport function ``(x, u, y, v) -> w`` applied to each class."""
        return self.grassmann.transport

    @property
    def retraction_name(self) -> str:
        """Registered name of the retraction (or the callable's qualified name)."""
        return self.grassmann.retraction_name

    @property
    def transport_name(self) -> str:
        """Registered name of the transport (or the callable's qualified name)."""
        return self.grassmann.transport_name

    def extra_repr(self) -> str:
        return f"subspace_dims={self.subspace_dims}, {self.grassmann.extra_repr()}"

    def mask(self, like: torch.Tensor) -> torch.Tensor:
        """Column mask of shape ``(C, 1, k_max)`` (1 = active) in ``like``'s dtype and device."""
        key = (like.device, like.dtype)
        if key not in self._masks:
            dims = torch.tensor(self.subspace_dims, device=like.device)
            cols = torch.arange(self.max_dim, device=like.device)
            self._masks[key] = (cols < dims[:, None]).to(like.dtype).unsqueeze(-2)
        return self._masks[key]

    # --- embedding in R^(n + k_max) ------------------------------------------
    def _embed(self, t: torch.Tensor, point: bool) -> torch.Tensor:
        """``t`` (``(..., C, n, k_max)``) with ``k_max`` extra rows, returned in row storage."""
        k = self.max_dim
        if point:
            extra = torch.diag_embed(1 - self.mask(t).squeeze(-2))
        else:
            extra = t.new_zeros(len(self.subspace_dims), k, k)
        extra = extra.expand(*t.shape[:-2], k, k)
        return torch.cat([t.mT, extra], dim=-1).mT

    def _cut(self, t: torch.Tensor) -> torch.Tensor:
        """Drop the extra rows and zero the padded columns; row storage."""
        n = t.shape[-2] - self.max_dim
        return (t.mT[..., :n] * self.mask(t).mT).mT

    # --- checks ------------------------------------------------------------------
    def _check_shape(self, shape, name):
        ok, reason = self.grassmann._check_shape(shape, name)
        if not ok:
            return ok, reason
        expected = (len(self.subspace_dims), self.max_dim)
        if len(shape) < 3 or (shape[-3], shape[-1]) != expected:
            return False, (
                f"{name} must have shape (..., C, n, k_max) with C={expected[0]}, "
                f"k_max={expected[1]}; got {tuple(shape)}"
            )
        return True, None

    def _check_point_on_manifold(self, x, *, atol=None, rtol=None):
        if not x.is_floating_point():
            return False, f"x must be a floating tensor; got dtype {x.dtype}"
        target = torch.diag_embed(self.mask(x).squeeze(-2))
        err = (gram(x, x) - target).abs().amax() if x.numel() else x.new_zeros(())
        limit = atol if atol is not None else _checks.orthonormality_tolerance(x.dtype, x.shape[-2])
        if not bool(err <= limit):
            return False, f"x^T x != diag(mask): max deviation {float(err):.3g} > {limit:.3g}"
        return True, None

    def _check_vector_on_tangent(self, x, u, *, atol=None, rtol=None):
        ok, reason = self.grassmann._check_vector_on_tangent(x, u, atol=atol, rtol=rtol)
        if ok and u.numel() and bool((u * (1 - self.mask(u))).abs().amax() > 0):
            return False, "u must be zero in the padded columns"
        return ok, reason

    # --- projections ---------------------------------------------------------------
    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Sign-fixed QR, then the padded columns set to zero.

        QR is column-sequential, so the active columns are the QR factor of
        ``x``'s first ``k_c`` columns alone.
        """
        return sign_fixed_qr(x) * self.mask(x)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Horizontal projection ``(u - x x^T u) * mask``."""
        return (u - x @ gram(x, u)) * self.mask(u)

    egrad2rgrad = proju

    def inner(self, x, u, v=None, *, keepdim=False):
        """Sum over classes of ``tr(u_c^T v_c)`` (the product metric), over the last two dims."""
        return self.grassmann.inner(x, u, v, keepdim=keepdim)

    def norm(self, x, u, *, keepdim=False):
        """Frobenius norm of the tangent vector ``u`` (padded columns are zero)."""
        return self.grassmann.norm(x, u, keepdim=keepdim)

    # --- moving around ---------------------------------------------------------
    def retr(self, x, u):
        return self._cut(self.retraction(self._embed(x, True), self._embed(u, False)))

    def expmap(self, x, u):
        return self._cut(_expmap(self._embed(x, True), self._embed(u, False)))

    def logmap(self, x, y):
        return self._cut(_logmap(self._embed(x, True), self._embed(y, True)))

    def transp(self, x, y, v, *, u=None):
        eu = None if u is None else self._embed(u, False)
        ex, ey, ev = self._embed(x, True), self._embed(y, True), self._embed(v, False)
        return self._cut(self.transport(ex, eu, ey, ev))

    def retr_transp(self, x, u, v):
        ex, eu, ev = self._embed(x, True), self._embed(u, False), self._embed(v, False)
        ey = self.retraction(ex, eu)
        return self._cut(ey), self._cut(self.transport(ex, eu, ey, ev))

    def transp_follow_retr(self, x, u, v):
        return self.retr_transp(x, u, v)[1]

    def expmap_transp(self, x, u, v):
        ex, eu, ev = self._embed(x, True), self._embed(u, False), self._embed(v, False)
        ey = _expmap(ex, eu)
        return self._cut(ey), self._cut(self.transport(ex, eu, ey, ev))

    def transp_follow_expmap(self, x, u, v):
        return self.expmap_transp(x, u, v)[1]

    def dist(self, x, y, *, keepdim=False):
        """Geodesic distance of each class pair; padded angles are zero."""
        d = torch.linalg.vector_norm(principal_angles(self._embed(x, True), self._embed(y, True)), dim=-1)
        return d[..., None, None] if keepdim else d

    def dist2(self, x, y, *, keepdim=False):
        d2 = principal_angles(self._embed(x, True), self._embed(y, True)).square().sum(-1)
        return d2[..., None, None] if keepdim else d2

    # --- sampling ----------------------------------------------------------------
    def random(self, *size, dtype=None, device=None, generator=None) -> torch.Tensor:
        """Uniform random bases of each class's ``k_c`` columns, shape ``size = (..., C, n, k_max)``."""
        size, dtype, device, generator = self._factory(size, dtype, device, generator)
        gauss = torch.randn(size, dtype=dtype, device=device, generator=generator)
        return geoopt.ManifoldTensor(self.projx(gauss), manifold=self)

    random_uniform = random

    def origin(self, *size, dtype=None, device=None, seed=None) -> torch.Tensor:
        """The first ``k_c`` columns of the identity per class, shape ``size = (..., C, n, k_max)``."""
        size, dtype, device, _ = self._factory(size, dtype, device, None)
        x = self.grassmann.origin(*size, dtype=dtype, device=device)
        return geoopt.ManifoldTensor(x * self.mask(x), manifold=self)

    def random_tangent(self, x: torch.Tensor, *, generator=None) -> torch.Tensor:
        """Gaussian horizontal tangent vector at ``x``, zero in the padded columns."""
        self.assert_check_point(x)
        return self.proju(x, self.grassmann.random_tangent(x, generator=generator))

    def _factory(self, size, dtype, device, generator):
        """Checked ``(size, dtype, device, generator)`` of :meth:`random` and :meth:`origin`."""
        size, dtype, device, generator = self.grassmann._parse_factory(size, dtype, device, generator)
        ok, reason = self._check_shape(size, "size")
        if not ok:
            raise ShapeError(reason)
        return size, dtype, device, generator
