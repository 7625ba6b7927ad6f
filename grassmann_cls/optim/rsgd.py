r"""Riemannian SGD for models whose class subspaces live on the Grassmann manifold."""

from __future__ import annotations

import contextlib
from types import MappingProxyType

import torch
from torch.optim import Optimizer
from torch.optim.sgd import sgd

from manifolds import MOMENTUM_STYLES, InPlaceManifold
from manifolds.stepping import QR_SIGNS
from manifolds import checks as _checks

from ..errors import CheckpointError, ConfigError, GrassmannError, ManifoldTypeError, OptionError
from .guard import NONFINITE, apply_nonfinite_policy, is_manifold_parameter

__all__ = ["RiemannianSGD", "is_manifold_parameter", "GRASSMANN_MOMENTUM", "NONFINITE", "PAPER_RECIPE"]

GRASSMANN_MOMENTUM = MOMENTUM_STYLES
"""Accepted values of ``grassmann_momentum``."""

PAPER_RECIPE = MappingProxyType({"retraction": "exp", "grassmann_momentum": "paper", "reorth_every": 5})
"""The GCR paper's optimizer for the bases: what :meth:`RiemannianSGD.paper_recipe` sets and checks.

``retraction`` is the bases' manifold option (``Grassmann(retraction="exp")``);
``grassmann_momentum`` and ``reorth_every`` are :class:`RiemannianSGD` options.
"""

def _reorth_every(group: dict) -> int:
    """The group's re-orthonormalisation period; 0 means never."""
    every = group["reorth_every"]
    if every is None:
        return PAPER_RECIPE["reorth_every"] if group["grassmann_momentum"] == "paper" else 0
    return every


class RiemannianSGD(Optimizer):
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

    def __init__(
        self,
        params,
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
    ):
        self.nonfinite = _checks.choice("nonfinite", nonfinite, NONFINITE)
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
        _validate_group(defaults)
        with _torch_argument_errors():
            super().__init__(params, defaults)

    @classmethod
    def paper_recipe(cls, params, lr: float, momentum: float = 0.9, **options) -> RiemannianSGD:
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
        optimizer = cls(params, lr, momentum, grassmann_momentum=PAPER_RECIPE["grassmann_momentum"],
                        reorth_every=PAPER_RECIPE["reorth_every"], **options)
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

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise ManifoldTypeError(f"a parameter group must be a dict; got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ConfigError(f"a parameter group needs 'params'; got keys {sorted(param_group)}")
        _validate_group({**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}})
        with _torch_argument_errors():
            super().add_param_group(param_group)
        _validate_manifolds(self.param_groups[-1])

    def __setstate__(self, state):
        super().__setstate__(state)
        if not hasattr(self, "nonfinite"):
            self.nonfinite = "raise"

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; a mismatching or damaged one raises and changes nothing.

        Raises
        ------
        CheckpointError
            If ``state_dict`` does not fit these parameters (group sizes, buffer
            shapes) or holds bad options or non-finite momentum buffers.
        """
        load_checked(self, super().load_state_dict, state_dict)

    def __getstate__(self):
        return {**super().__getstate__(), "nonfinite": self.nonfinite}

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimisation step; returns ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.check_gradients()
        if apply_nonfinite_policy(self.param_groups, self.nonfinite):
            self.update()
        return loss

    def check_gradients(self) -> None:
        """Refuse what the manifold step cannot use (sparse gradients), before anything is written.

        :meth:`step` calls this, then the ``nonfinite`` policy, then :meth:`update`;
        an optimizer that drives several (e.g. :class:`~grassmann_cls.optim.HybridOptimizer`)
        may do the same in its own order.

        Raises
        ------
        OptionError
            If a manifold parameter has a sparse gradient.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse and is_manifold_parameter(p):
                    raise OptionError(
                        f"manifold parameters need dense gradients; got a sparse one for shape {tuple(p.shape)}"
                    )

    @torch.no_grad()
    def update(self) -> None:
        """The update of :meth:`step` alone, for gradients already checked (no scan, no ``nonfinite`` policy)."""
        for group in self.param_groups:
            plain = [p for p in group["params"] if p.grad is not None and not is_manifold_parameter(p)]
            self._step_plain(group, plain)
            for p in group["params"]:
                if p.grad is not None and is_manifold_parameter(p):
                    self._step_manifold(group, p)

    # --- plain tensors ----------------------------------------------------------
    def _step_plain(self, group: dict, params: list[torch.Tensor]) -> None:
        """Exactly ``torch.optim.SGD.step`` for these parameters.

        # Note [foreach Nesterov writes into p.grad]
        # torch's multi-tensor SGD adds the momentum into the gradient tensors
        # in place when nesterov=True; the single-tensor path does not. Both
        # compute the same numbers, so Nesterov always takes the single path.
        """
        if not params:
            return
        grads = [p.grad for p in params]
        momentum = group["momentum"]
        buffers = [self.state[p].get("momentum_buffer") for p in params] if momentum != 0 else []
        sgd(
            params,
            grads,
            buffers,
            has_sparse_grad=any(g.is_sparse for g in grads),
            foreach=False if group["nesterov"] else group["foreach"],
            weight_decay=group["weight_decay"],
            momentum=momentum,
            lr=group["lr"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=False,
        )
        for p, buf in zip(params, buffers):
            self.state[p]["momentum_buffer"] = buf

    # --- manifold parameters -----------------------------------------------------
    def _step_manifold(self, group: dict, p: torch.Tensor) -> None:
        state = self.state[p]
        state["step"] = state.get("step", 0) + 1
        every = _reorth_every(group)
        count = state["step"] - 1 + group.get("reorth_count_from", 1)
        due = bool(every) and count % every == 0
        unsigned = group.get("reorth_qr", "sign_fixed") == "unsigned"
        buf = p.manifold.momentum_step_(
            p, p.grad, state.get("momentum_buffer"),
            lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
            nesterov=group["nesterov"], style=group["grassmann_momentum"],
            reorthonormalize=due and not unsigned,
        )
        if due and unsigned:
            # The subspace is unchanged, so a tangent buffer needs no new projection.
            p.manifold.projx_(p, qr="unsigned")
        if buf is not None:
            state["momentum_buffer"] = buf


def _stabilize_as_reorth_every(stabilize, reorth_every):
    """geoopt's ``stabilize=N`` is ``reorth_every=N`` here (projx every N steps); both at once is refused."""
    # geoopt's stabilize_group is projx of the point and proju of the momentum
    # buffer; momentum_step_(reorthonormalize=True) does the same (the buffer
    # is projected for "transport"; "paper" buffers hold Euclidean gradients).
    if stabilize is None:
        return reorth_every
    if reorth_every is not None:
        raise OptionError(f"stabilize is geoopt's name for reorth_every; pass one of them, not both "
                          f"(got stabilize={stabilize!r}, reorth_every={reorth_every!r})")  # fmt: skip
    return _checks.integer("stabilize", stabilize, minimum=1)


def _validate_manifolds(group: dict) -> None:
    """Every manifold parameter of ``group`` is an InPlaceManifold that accepts the group's momentum style."""
    for p in group["params"]:
        if not is_manifold_parameter(p):
            continue
        if not isinstance(p.manifold, InPlaceManifold):
            raise ManifoldTypeError(
                f"RiemannianSGD steps manifold parameters through manifolds.InPlaceManifold's in-place methods; "
                f"a parameter of shape {tuple(p.shape)} is on {type(p.manifold).__name__}, which is not one "
                "(use geoopt.optim.RiemannianSGD for it)"
            )
        p.manifold.check_momentum_style(group["grassmann_momentum"])
        if group.get("reorth_qr", "sign_fixed") != "sign_fixed":
            p.manifold.projx_(p.detach().clone(), qr=group["reorth_qr"])  # refused here, not mid-step


@contextlib.contextmanager
def _torch_argument_errors():
    """Turn ``torch.optim.Optimizer``'s own argument errors (bad params) into the library's."""
    try:
        yield
    except GrassmannError:
        raise
    except TypeError as err:
        raise ManifoldTypeError(f"params: {' '.join(str(err).split())}") from err
    except ValueError as err:
        raise ConfigError(f"params: {' '.join(str(err).split())}") from err


def load_checked(optimizer: Optimizer, load, state_dict) -> None:
    """``load(state_dict)`` then check options and buffers, restoring the old state on failure."""
    if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
        raise CheckpointError(f"expected an optimizer state_dict with 'state' and 'param_groups'; got {type(state_dict).__name__}")
    previous = Optimizer.state_dict(optimizer)
    try:
        load(state_dict)
        _check_loaded(optimizer)
    except (GrassmannError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        Optimizer.load_state_dict(optimizer, previous)
        first = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"optimizer state_dict does not match {type(optimizer).__name__} ({first})") from None


def _check_loaded(optimizer: Optimizer) -> None:
    """Every group's options valid; every momentum buffer finite and shaped like its parameter."""
    for group in optimizer.param_groups:
        if "grassmann_momentum" in group:
            _validate_group(group)
            _validate_manifolds(group)
        for p in group["params"]:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is None:
                continue
            if buf.shape != p.shape:
                raise CheckpointError(f"momentum buffer of shape {tuple(buf.shape)} for a parameter of shape {tuple(p.shape)}")
            if not bool(torch.isfinite(buf).all()):
                raise CheckpointError(f"the momentum buffer of a parameter of shape {tuple(p.shape)} holds NaN or Inf")


def _validate_group(group: dict) -> None:
    """Check one parameter group's options (at construction, never per step)."""
    _checks.real("lr", group["lr"], minimum=0.0)
    momentum = _checks.real("momentum", group["momentum"], minimum=0.0)
    dampening = _checks.real("dampening", group["dampening"], minimum=0.0, maximum=1.0)
    _checks.real("weight_decay", group["weight_decay"], minimum=0.0)
    if not isinstance(group["nesterov"], bool):
        raise OptionError(f"nesterov must be a bool; got {group['nesterov']!r}")
    if group["nesterov"] and (momentum <= 0 or dampening != 0):
        raise OptionError(
            f"nesterov=True needs momentum > 0 and dampening = 0; got momentum={momentum}, dampening={dampening}"
        )
    _checks.choice("grassmann_momentum", group["grassmann_momentum"], GRASSMANN_MOMENTUM)
    if group["reorth_every"] is not None:
        _checks.integer("reorth_every", group["reorth_every"], minimum=0)
    _checks.choice("reorth_qr", group.get("reorth_qr", "sign_fixed"), QR_SIGNS)
    _checks.integer("reorth_count_from", group.get("reorth_count_from", 1), minimum=0)
    if group.get("foreach") is not None and not isinstance(group["foreach"], bool):
        raise OptionError(f"foreach must be None or a bool; got {group['foreach']!r}")
