r"""Riemannian SGD for models whose class subspaces live on the Grassmann manifold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from manifolds import MOMENTUM_STYLES
from manifolds import checks as _checks
from manifolds.stepping import QR_SIGNS

from ..errors import OptionError
from .base import ManifoldOptimizer, check_sgd_options, sgd_step
from .guard import NONFINITE, is_manifold_parameter

__all__ = ["RiemannianSGD", "is_manifold_parameter", "GRASSMANN_MOMENTUM", "NONFINITE", "PAPER_RECIPE"]

GRASSMANN_MOMENTUM = MOMENTUM_STYLES
"""Accepted values of ``grassmann_momentum``."""

PAPER_RECIPE: Mapping[str, Any] = MappingProxyType(
    {"retraction": "exp", "grassmann_momentum": "paper", "reorth_every": 5}
)
"""The GCR paper's optimizer for the bases: what :meth:`RiemannianSGD.paper_recipe` sets and checks.

``retraction`` is the bases' manifold option (``Grassmann(retraction="exp")``);
``grassmann_momentum`` and ``reorth_every`` are :class:`RiemannianSGD` options.
"""


def _reorth_every(group: dict[str, Any]) -> int:
    """The group's re-orthonormalisation period; 0 means never."""
    every = group["reorth_every"]
    if every is None:
        return PAPER_RECIPE["reorth_every"] if group["grassmann_momentum"] == "paper" else 0
    return int(every)


class RiemannianSGD(ManifoldOptimizer):
    r"""SGD for plain tensors and Riemannian SGD for Grassmann bases, in one optimizer.

    Plain tensors (and geoopt tensors on ``geoopt.Euclidean``) are stepped by
    the same function as :class:`torch.optim.SGD`, with the same state, so
    the results are identical. Every ``geoopt.ManifoldParameter`` on another
    manifold (e.g. :class:`manifolds.Grassmann`, ``GrassmannHead.bases``) is
    stepped on its manifold; weight decay never touches it, and ``p.grad`` is
    never modified. With Euclidean gradient :math:`D` at the basis :math:`S`,
    momentum :math:`\mu`, dampening :math:`\tau` and learning rate
    :math:`\eta`:

    ``grassmann_momentum="transport"`` (default): a tangent momentum buffer,
    carried to the new point by the manifold's vector transport,

    .. math::

       \begin{aligned}
       G &= (I - SS^T) D, \\
       M &\leftarrow \mu M + (1-\tau) G \quad (M_0 = G), \\
       S' &= R_S(-\eta M), \\
       M &\leftarrow \mathcal{T}_{S \to S'} M,
       \end{aligned}

    with the manifold's retraction :math:`R` and transport :math:`\mathcal{T}`.

    ``grassmann_momentum="paper"``: the momentum of the GCR paper. The buffer
    holds raw Euclidean gradients and is projected only when used,

    .. math::

       \begin{aligned}
       B &\leftarrow \mu B + (1-\tau) D \quad (B_0 = D), \\
       G &= (I - SS^T) B, \\
       S' &= R_S(-\eta G),
       \end{aligned}

    with the manifold's retraction :math:`R`; no transport is used, so a
    manifold whose transport is not ``"projection"`` is refused (rather than
    its transport ignored). Every ``reorth_every``-th step (default 5 in this
    style) :math:`S` is replaced by the sign-fixed QR factor of itself.

    The paper's recipe is this style with the exponential map
    (:math:`S' = (S V\cos\eta\Sigma - U\sin\eta\Sigma) V^T` for
    :math:`G = U\Sigma V^T`, i.e. ``Grassmann(retraction="exp")``) and
    ``reorth_every=5``: the settings in :data:`PAPER_RECIPE`, which
    :meth:`paper_recipe` applies and checks.

    With ``nesterov=True`` the direction is :math:`D + \mu B` (paper) or
    :math:`G + \mu M` (transport), as in ``torch.optim.SGD``. Manifold
    parameters are stepped through their manifold's public in-place methods
    (:meth:`manifolds.Grassmann.momentum_step_`; see :mod:`manifolds.stepping`),
    so their manifold must be a :class:`manifolds.InPlaceManifold`
    (:class:`~manifolds.Grassmann`, :class:`~manifolds.PaddedGrassmann`);
    other geoopt manifolds are refused (``geoopt.optim.RiemannianSGD``
    steps them).

    Parameters
    ----------
    params : iterable
        Parameters, named parameters or parameter groups, as for any
        ``torch.optim`` optimizer. Groups may override every option below
        except ``nonfinite``.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    momentum, dampening, weight_decay : float
        As in ``torch.optim.SGD``; ``weight_decay`` applies to plain tensors only.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
    grassmann_momentum : {"transport", "paper"}
        How manifold parameters keep momentum (see above).
    reorth_every : int, optional
        Replace each basis by its sign-fixed QR factor every this many steps;
        0 never. ``None``: 5 for ``"paper"``, never for ``"transport"`` (the
        retraction already returns orthonormal bases).
    reorth_qr : {"sign_fixed", "unsigned"}
        The QR factor that re-orthonormalises (:meth:`manifolds.Grassmann.projx_`'s
        ``qr``): ``"sign_fixed"`` (:math:`\operatorname{diag}(R) > 0`, so a nearly
        orthonormal basis changes by rounding only) or ``"unsigned"``
        (``torch.linalg.qr(S).Q``, which negates every column whose pivot is
        positive; with ``"paper"`` momentum such a column's raw Euclidean
        buffer then points against its gradients). ``"unsigned"`` is what the
        GCR authors' reference optimizer does.
    reorth_count_from : int
        The count of the first step: re-orthonormalise after the step whose
        count :math:`c` satisfies :math:`c \bmod \text{reorth\_every} = 0`.
        ``1`` (default): after steps ``reorth_every``, ``2 reorth_every``, ...;
        ``0``: after steps ``1``, ``reorth_every + 1``, ... (the reference
        counts from 0, so it re-orthonormalises at the first step too).
        ``RiemannianSGD.paper_recipe(params, lr, reorth_qr="unsigned",
        reorth_count_from=0)`` is the reference's algorithm for a model with
        one bases tensor (the reference's count is one module-wide counter,
        advanced once per stepped bases tensor).
    nonfinite : {"raise", "skip"}
        If any gradient holds a NaN or Inf, or would move a basis further than
        its dtype resolves (see :func:`~grassmann_cls.optim.guard.first_bad_gradient`): raise
        :class:`~grassmann_cls.errors.NonFiniteError` naming the parameter, or
        skip the whole step with a ``RuntimeWarning``. Nothing is written in
        either case, so bases and momentum stay finite. (``torch.optim.SGD``
        would write the NaN.)
    foreach : bool, optional
        As in ``torch.optim.SGD``, for the plain tensors.
    stabilize : int, optional
        geoopt's name for ``reorth_every``, accepted with geoopt's meaning
        (project every manifold parameter back onto its manifold every
        ``stabilize`` steps); give one of the two, not both. See
        :doc:`/geoopt` for what else differs from ``geoopt.optim.RiemannianSGD``.

    Notes
    -----
    State per manifold parameter: ``"momentum_buffer"`` (shape and memory
    layout of the parameter, allocated once; what
    :meth:`~manifolds.Grassmann.momentum_step_` returns) and ``"step"``.
    State per plain tensor: ``"momentum_buffer"`` exactly as
    ``torch.optim.SGD`` keeps it.

    Examples
    --------
    >>> import torch
    >>> from grassmann_cls import GrassmannHead
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), GrassmannHead(16, 3, 2))
    >>> opt = RiemannianSGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    >>> loss = model(torch.randn(4, 8)).logsumexp(-1).mean()
    >>> loss.backward()
    >>> opt.step()
    """

    _geoopt_counterpart = "RiemannianSGD"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        grassmann_momentum: str = "transport",
        reorth_every: int | None = None,
        nonfinite: str = "raise",
        foreach: bool | None = None,
        stabilize: int | None = None,
        reorth_qr: str = "sign_fixed",
        reorth_count_from: int = 1,
    ) -> None:
        reorth_every = _stabilize_as_reorth_every(stabilize, reorth_every)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "foreach": foreach,
            "grassmann_momentum": grassmann_momentum,
            "reorth_every": reorth_every,
            "reorth_qr": reorth_qr,
            "reorth_count_from": reorth_count_from,
        }
        super().__init__(params, defaults, nonfinite=nonfinite)

    @classmethod
    def paper_recipe(cls, params: Iterable[Any], lr: float, momentum: float = 0.9, **options: Any) -> RiemannianSGD:
        """The GCR paper's optimizer: :data:`PAPER_RECIPE`'s momentum style and period.

        Every manifold parameter must already use the recipe's retraction
        (``Grassmann(retraction="exp")``); other options are as for the
        constructor.

        Raises
        ------
        OptionError
            If a manifold parameter's retraction is not the recipe's, or
            ``options`` sets ``grassmann_momentum`` or ``reorth_every``.
        """
        clash = sorted(set(options) & {"grassmann_momentum", "reorth_every"})
        if clash:
            raise OptionError(f"paper_recipe sets {', '.join(clash)} itself; got {', '.join(clash)}=...")
        optimizer = cls(
            params,
            lr,
            momentum,
            grassmann_momentum=PAPER_RECIPE["grassmann_momentum"],
            reorth_every=PAPER_RECIPE["reorth_every"],
            **options,
        )
        for group in optimizer.param_groups:
            for p in group["params"]:
                name = p.manifold.retraction_name if is_manifold_parameter(p) else PAPER_RECIPE["retraction"]
                if name != PAPER_RECIPE["retraction"]:
                    raise OptionError(
                        f"the paper's recipe steps with retraction {PAPER_RECIPE['retraction']!r}; a manifold "
                        f"parameter of shape {tuple(p.shape)} uses {name!r} (build it on "
                        f"Grassmann(retraction={PAPER_RECIPE['retraction']!r}))"
                    )
        return optimizer

    # --- options ---------------------------------------------------------------------
    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check one parameter group's options (at construction, never per step)."""
        check_sgd_options(group)
        _checks.choice("grassmann_momentum", group["grassmann_momentum"], GRASSMANN_MOMENTUM)
        if group["reorth_every"] is not None:
            _checks.integer("reorth_every", group["reorth_every"], minimum=0)
        _checks.choice("reorth_qr", group.get("reorth_qr", "sign_fixed"), QR_SIGNS)
        _checks.integer("reorth_count_from", group.get("reorth_count_from", 1), minimum=0)

    def _validate_manifold_parameter(self, group: dict[str, Any], p: Any) -> None:
        """The manifold accepts the group's momentum style and QR signs (refused here, not mid-step)."""
        p.manifold.check_momentum_style(group["grassmann_momentum"])
        if group.get("reorth_qr", "sign_fixed") != "sign_fixed":
            p.manifold.projx_(p.detach().clone(), qr=group["reorth_qr"])

    # --- plain tensors ----------------------------------------------------------
    def _step_plain(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Exactly ``torch.optim.SGD.step`` for these parameters."""
        sgd_step(self, group, params)

    # --- manifold parameters -----------------------------------------------------
    def _step_manifold(self, group: dict[str, Any], p: Any) -> None:
        state = self.state[p]
        state["step"] = state.get("step", 0) + 1
        every = _reorth_every(group)
        count = state["step"] - 1 + group.get("reorth_count_from", 1)
        due = bool(every) and count % every == 0
        unsigned = group.get("reorth_qr", "sign_fixed") == "unsigned"
        buf = p.manifold.momentum_step_(
            p,
            p.grad,
            state.get("momentum_buffer"),
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            style=group["grassmann_momentum"],
            reorthonormalize=due and not unsigned,
        )
        if due and unsigned:
            # The subspace is unchanged, so a tangent buffer needs no new projection.
            p.manifold.projx_(p, qr="unsigned")
        if buf is not None:
            state["momentum_buffer"] = buf


def _stabilize_as_reorth_every(stabilize: int | None, reorth_every: int | None) -> int | None:
    """geoopt's ``stabilize=N`` is ``reorth_every=N`` here (projx every N steps); both at once is refused."""
    # geoopt's stabilize_group is projx of the point and proju of the momentum
    # buffer; momentum_step_(reorthonormalize=True) does the same (the buffer
    # is projected for "transport"; "paper" buffers hold Euclidean gradients).
    if stabilize is None:
        return reorth_every
    if reorth_every is not None:
        raise OptionError(
            f"stabilize is geoopt's name for reorth_every; pass one of them, not both "
            f"(got stabilize={stabilize!r}, reorth_every={reorth_every!r})"
        )
    return _checks.integer("stabilize", stabilize, minimum=1)
