r"""The Grassmann class representation (GCR) classification head."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import geoopt
import torch
import torch.nn.functional as F
from torch import nn

from manifolds import Grassmann, PaddedGrassmann
from manifolds import checks as _checks

from .errors import CheckpointError, ManifoldTypeError, NonFiniteError, ShapeError
from .logits import LOGITS, Logit

__all__ = ["GrassmannHead", "HEAD_OPTIONS"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)
# Loaded bases may stray this far from orthonormal (float32 drift of a long run);
# the same tolerance as training.checkpoint.check_manifold_parameters.
_LOAD_ATOL = 1e-3

HEAD_OPTIONS = ("scale", "learn_scale", "normalize", "logit", "manifold", "eps", "dtype", "device", "generator")
"""The keyword-only options of :class:`GrassmannHead` (what ``from_linear`` and ``convert`` pass on)."""


def _is_sequence(value) -> bool:
    """Lists, tuples, 1-d arrays and tensors; not ints, 0-d arrays or strings."""
    if isinstance(value, (str, bytes)):
        return False
    try:
        len(value)
    except TypeError:
        return False
    return True


def _subspace_dims(subspace_dim, in_features: int, num_classes: int) -> tuple[int, ...]:
    """One ``k`` per class from an int or a sequence, checked against ``n``."""
    if _is_sequence(subspace_dim):
        dims = tuple(_checks.integer("subspace_dim[c]", k) for k in subspace_dim)
        if len(dims) != num_classes:
            raise ShapeError(
                f"subspace_dim must be an int or have one entry per class; "
                f"got {len(dims)} entries for num_classes={num_classes}"
            )
    else:
        dims = (_checks.integer("subspace_dim", subspace_dim),) * num_classes
    for c, k in enumerate(dims):
        if not 1 <= k <= in_features:
            where = "" if len(set(dims)) == 1 else f" for class {c}"
            raise ShapeError(f"subspace_dim must satisfy 1 <= k <= n{where}; got k={k}, n={in_features}")
    return dims


def _head_manifold(manifold, dims: tuple[int, ...]) -> Grassmann | PaddedGrassmann:
    """The manifold of the bases: ``manifold`` itself for one ``k``, padded otherwise."""
    if manifold is None:
        manifold = Grassmann()
    if not isinstance(manifold, (Grassmann, PaddedGrassmann)):
        raise ManifoldTypeError(
            f"manifold must be a manifolds.Grassmann or manifolds.PaddedGrassmann; got {type(manifold).__name__}"
        )
    variable = len(set(dims)) > 1
    if isinstance(manifold, PaddedGrassmann):
        if manifold.subspace_dims != dims:
            raise ShapeError(
                f"manifold.subspace_dims must equal the head's; got {manifold.subspace_dims}, expected {dims}"
            )
        return manifold
    if variable:
        return PaddedGrassmann(dims, retraction=manifold.retraction, transport=manifold.transport)
    return manifold


class GrassmannHead(nn.Module):
    r"""Classification head with one linear subspace per class (GCR).

    Class ``c`` is the span of an orthonormal basis :math:`S_c \in
    \mathbb{R}^{n \times k_c}`, a point of :math:`\mathrm{Gr}(n, k_c)`, and its
    logit is the length of the feature's projection onto that subspace:

    .. math:: \hat x = x / \max(\|x\|, \varepsilon), \qquad
              \ell_c = \gamma\, \|S_c^T \hat x\|_2 \in [0, \gamma].

    All bases are one :class:`geoopt.ManifoldParameter` ``bases`` of shape
    ``(C, n, k)`` on :class:`manifolds.Grassmann`, stored as a transposed view
    over ``(C, k, n)`` memory, so :attr:`linear_weight` (``(C*k, n)``) is a free
    view in ``nn.Linear``'s layout and ``forward`` is one ``F.linear`` plus a
    norm over groups of ``k``. Train it with :class:`grassmann_cls.RiemannianSGD`
    (or any geoopt optimizer), which keeps every basis orthonormal.

    With one ``k`` per class (``subspace_dim`` a sequence), the bases are padded
    to ``k_max = max k_c`` with zero columns and live on a
    :class:`~manifolds.PaddedGrassmann` (the product of the
    :math:`\mathrm{Gr}(n, k_c)`); the forward pass is unchanged because the
    zero columns contribute nothing.

    Precision: the bases stay in float32 (or float64) when the model is cast
    to a half-precision dtype (``model.to(torch.bfloat16)``, ``model.half()``),
    as mixed-precision practice keeps normalisation layers; device moves and
    casts to float32/float64 apply as usual. ``forward`` takes features of
    any floating dtype and returns float32 (or float64) logits, and
    :class:`~grassmann_cls.RiemannianSGD` steps the bases in their own
    precision, so they stay orthonormal to float32 accuracy.

    Loading: ``load_state_dict`` (of the head or of any model holding it)
    refuses bases that hold NaN or Inf, or that are not orthonormal (within
    ``1e-3``), with :class:`~grassmann_cls.errors.CheckpointError`. Set
    :attr:`reproject_on_load` to ``True`` (on the head, or on the class for
    every head) to replace finite off-manifold bases by their sign-fixed QR
    factor with a ``RuntimeWarning`` instead; ``grassmann-cls --reproject``
    does exactly that.

    Parameters
    ----------
    in_features : int
        Feature dimension ``n``.
    num_classes : int
        Number of classes ``C``.
    subspace_dim : int or sequence of int
        ``k`` (``1 <= k <= n``), or one ``k_c`` per class.
    scale : float
        :math:`\gamma > 0`; 25 in every published configuration.
    learn_scale : bool
        Train :math:`\gamma` as a plain parameter (the paper keeps it fixed).
    normalize : bool
        L2-normalise the features (the paper does).
    logit : str or callable
        A :data:`~grassmann_cls.logits.LOGITS` name or a function
        ``(coefficients (..., C, k), feature_norm (..., 1)) -> (..., C)``.
    manifold : manifolds.Grassmann, optional
        Chooses the retraction and transport; ``Grassmann()`` by default.
    eps : float
        The :math:`\varepsilon` of the normalisation.
    dtype, device : optional
        Of the bases, as for ``nn.Linear``.
    generator : torch.Generator, optional
        For the uniform random initial bases.

    Examples
    --------
    >>> import torch
    >>> head = GrassmannHead(16, 10, 4, generator=torch.Generator().manual_seed(0))
    >>> head(torch.randn(8, 16)).shape
    torch.Size([8, 10])
    >>> tuple(head.bases.shape), head.linear_weight.shape
    ((10, 16, 4), torch.Size([40, 16]))
    """

    bases: geoopt.ManifoldParameter

    reproject_on_load: bool = False
    """Re-orthonormalise loaded bases that are off the manifold (with a warning) instead of refusing them."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        subspace_dim: int | Sequence[int],
        *,
        scale: float = 25.0,
        learn_scale: bool = False,
        normalize: bool = True,
        logit: str | Logit = "projection",
        manifold: Grassmann | None = None,
        eps: float = 1e-12,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.in_features = _checks.integer("in_features", in_features, minimum=1)
        self.num_classes = _checks.integer("num_classes", num_classes, minimum=1)
        self.subspace_dims = _subspace_dims(subspace_dim, self.in_features, self.num_classes)
        self.max_subspace_dim = max(self.subspace_dims)
        self.normalize = _checks.boolean("normalize", normalize)
        learn_scale = _checks.boolean("learn_scale", learn_scale)
        self.eps = _checks.real("eps", eps, minimum=0.0, strict=True)
        self._logit = LOGITS.resolve(logit)
        scale = _checks.real("scale", scale, minimum=0.0, strict=True)
        dtype = _checks.dtype("dtype", dtype)
        device = _checks.device("device", device)
        generator = _checks.generator("generator", generator, device)
        manifold = _head_manifold(manifold, self.subspace_dims)
        shape = (self.num_classes, self.in_features, self.max_subspace_dim)
        data = manifold.random(*shape, dtype=dtype, device=device, generator=generator)
        self.bases = geoopt.ManifoldParameter(data.mT.contiguous().mT, manifold=manifold)
        scale_tensor = torch.tensor(scale, dtype=torch.float32, device=device)
        if learn_scale:
            self.scale = nn.Parameter(scale_tensor)
        else:
            self.register_buffer("scale", scale_tensor)

    @property
    def manifold(self) -> Grassmann:
        """The manifold the bases live on (``bases.manifold``)."""
        return self.bases.manifold

    @property
    def subspace_dim(self) -> int | tuple[int, ...]:
        """``k`` when all classes share it, else the tuple of ``k_c``."""
        return self.subspace_dims[0] if len(set(self.subspace_dims)) == 1 else self.subspace_dims

    @property
    def logit(self) -> Logit:
        """The logit function (see :mod:`grassmann_cls.logits`)."""
        return self._logit

    @property
    def linear_weight(self) -> torch.Tensor:
        """The bases as an ``nn.Linear`` weight of shape ``(C*k_max, n)``; a view when stored as ``(C, k, n)``."""
        return self.bases.mT.reshape(-1, self.in_features)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw new uniform random bases in place."""
        b = self.bases
        self.bases.copy_(self.manifold.random(*b.shape, dtype=b.dtype, device=b.device, generator=generator))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(..., C)`` for features of shape ``(..., n)``."""
        if not isinstance(features, torch.Tensor) or features.is_complex() or features.dtype == torch.bool:
            got = features.dtype if isinstance(features, torch.Tensor) else type(features).__name__
            raise ManifoldTypeError(f"features must be a real tensor; got {got}")
        if features.shape[-1:] != (self.in_features,):
            raise ShapeError(f"features must have shape (..., {self.in_features}); got {tuple(features.shape)}")
        if features.device != self.bases.device:
            raise ManifoldTypeError(f"features are on {features.device} but the head is on {self.bases.device}")
        # Note [precision of the head]
        # Normalisation and the norm over each group of k run in at least
        # float32; only the matmul follows autocast (bf16 / fp16).
        x = features.to(torch.promote_types(features.dtype, torch.float32))
        if self.normalize:
            x = F.normalize(x, dim=-1, eps=self.eps)
        feature_norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        weight = self.linear_weight
        coefficients = F.linear(x.to(weight.dtype), weight)
        coefficients = coefficients.to(torch.promote_types(coefficients.dtype, torch.float32))
        coefficients = coefficients.unflatten(-1, (self.num_classes, self.max_subspace_dim))
        return self.scale * self._logit(coefficients, feature_norm.to(coefficients.dtype))

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, subspace_dim: int | Sequence[int], *, generator: torch.Generator | None = None, **kwargs
    ) -> GrassmannHead:
        """A head whose class ``c`` subspace contains the class vector of ``linear``.

        Column 0 of :math:`S_c` is :math:`w_c / \\|w_c\\|`; the other columns
        complete it at random in its orthogonal complement (a zero ``w_c``
        gives a fully random basis). The bias is dropped.

        Parameters
        ----------
        linear : nn.Linear
            Weight of shape ``(C, n)``.
        subspace_dim : int or sequence of int
            As for :class:`GrassmannHead`.
        generator : torch.Generator, optional
            For the random completion.
        **kwargs
            Other :class:`GrassmannHead` arguments.
        """
        if not isinstance(linear, nn.Linear):
            raise ManifoldTypeError(f"linear must be an nn.Linear; got {type(linear).__name__}")
        _checks.keywords("GrassmannHead.from_linear", kwargs, HEAD_OPTIONS)
        w = linear.weight.detach()
        _checks.tensor("linear.weight", w)
        if not bool(torch.isfinite(w).all()):
            raise NonFiniteError("linear.weight holds NaN or Inf values; expected finite values")
        kwargs.setdefault("dtype", w.dtype)
        kwargs.setdefault("device", w.device)
        head = cls(w.shape[1], w.shape[0], subspace_dim, generator=generator, **kwargs)
        with torch.no_grad():
            start = head.bases.detach().clone()
            norms = torch.linalg.vector_norm(w, dim=1, keepdim=True)
            first = torch.where(norms > 0, w / norms.clamp_min(torch.finfo(w.dtype).tiny), start[..., 0])
            start[..., 0] = first.to(start.dtype)
            head.bases.copy_(head.manifold.projx(start))
        return head

    def _apply(self, fn, recurse=True):
        # Note [bases keep their precision]
        # A cast to float16/bfloat16 would leave the bases unusable (LAPACK has
        # no half kernels, and half precision cannot hold them orthonormal), so
        # for the bases and their gradient the cast is reduced to its device
        # move. The target is read by applying fn to an empty probe tensor.
        bases = self.bases

        def keep_bases_precision(t):
            if (t is bases or t is bases.grad) and t.dtype in _checks.LAPACK_DTYPES:
                target = fn(t.new_empty(0))
                if target.dtype in _LOW_PRECISION:
                    return t.to(device=target.device)
            return fn(t)

        return super()._apply(keep_bases_precision, recurse)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        key = prefix + "bases"
        value = state_dict.get(key)
        if isinstance(value, torch.Tensor) and value.shape == self.bases.shape and value.is_floating_point():
            state_dict[key] = self._checked_bases(key, value)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _checked_bases(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """``value`` if finite and orthonormal; re-projected (with a warning) if :attr:`reproject_on_load`."""
        value = value.detach()
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"parameter {key} holds NaN or Inf values; the state dict is damaged")
        check = value.to(self.bases.dtype) if value.dtype in _LOW_PRECISION else value
        ok, reason = self.manifold.check_point_on_manifold(check, explain=True, atol=_LOAD_ATOL, rtol=_LOAD_ATOL)
        if ok:
            return value
        if not self.reproject_on_load:
            raise CheckpointError(
                f"parameter {key} is not on its manifold ({reason}); pass reproject=True "
                "(GrassmannHead.reproject_on_load = True; CLI --reproject) to re-orthonormalise it"
            )
        warnings.warn(
            f"parameter {key} was not on its manifold ({reason}); re-projected it by QR as asked (reproject=True)",
            RuntimeWarning,
            stacklevel=4,
        )
        return self.manifold.projx(check).to(value.dtype)

    def extra_repr(self) -> str:
        k = self.subspace_dim
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, subspace_dim={k}, "
            f"scale={float(self.scale):g}, learn_scale={isinstance(self.scale, nn.Parameter)}, "
            f"normalize={self.normalize}, logit={LOGITS.name_of(self._logit)}, "
            f"retraction={self.manifold.retraction_name}, transport={self.manifold.transport_name}"
        )
