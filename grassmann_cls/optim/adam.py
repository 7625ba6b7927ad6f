r"""Riemannian Adam for models whose class subspaces live on the Grassmann manifold."""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer
from torch.optim.adam import adam

from manifolds import InPlaceManifold
from manifolds import checks as _checks

from ..errors import CheckpointError, GrassmannError, ManifoldTypeError, OptionError
from .guard import NONFINITE, apply_nonfinite_policy, is_manifold_parameter
from .rsgd import _torch_argument_errors

__all__ = ["RiemannianAdam"]


class RiemannianAdam(Optimizer):
    r"""Adam / AdamW for plain tensors and a basis-invariant Riemannian Adam for Grassmann bases.

    Plain tensors (and geoopt tensors on ``geoopt.Euclidean``) are stepped by
    the same function as :class:`torch.optim.AdamW` (``decoupled_weight_decay=True``,
    the default) or :class:`torch.optim.Adam` (``False``), with the same state,
    so the results are identical.

    Every ``geoopt.ManifoldParameter`` on another manifold (e.g.
    ``GrassmannHead.bases``, shape ``(..., n, k)``, one ``n x k`` basis per
    class) is stepped on its manifold, without weight decay. With Riemannian
    gradient :math:`G = (I - SS^T) D` of the Euclidean gradient :math:`D` at
    the basis :math:`S`, step :math:`t`, learning rate :math:`\eta`:

    .. math:: M \leftarrow \beta_1 M + (1 - \beta_1) G, \qquad
              v \leftarrow \beta_2 v + (1 - \beta_2) \frac{\|G\|_F^2}{nk},

    .. math:: S' = R_S\!\left(-\eta\, \frac{M / (1 - \beta_1^t)}
              {\sqrt{v / (1 - \beta_2^t)} + \epsilon}\right), \qquad
              M \leftarrow \mathcal{T}_{S \to S'} M,

    with the manifold's retraction :math:`R` and vector transport
    :math:`\mathcal{T}`. The second moment :math:`v` is one scalar per class
    subspace (the mean squared entry of its Riemannian gradient, as Becigneul
    & Ganea (2019) keep one per component of a product manifold); with
    ``amsgrad=True`` the running maximum of :math:`v` is used instead.

    A change of the basis of a starting subspace, :math:`S_0 \to S_0 Q`
    (:math:`Q \in O(k)`), maps :math:`G \to GQ` and :math:`M \to MQ` and
    leaves :math:`v` unchanged, so with a right-equivariant retraction
    (``exp``, ``polar``: :math:`R_{SQ}(uQ) = R_S(u)\,Q`) and the
    ``projection`` transport every iterate is the same subspace. (An
    elementwise second moment, as in ``torch.optim.Adam``, would not be: the
    entries of :math:`GQ` are not those of :math:`G`.)

    Parameters
    ----------
    params : iterable
        Parameters, named parameters or parameter groups, as for any
        ``torch.optim`` optimizer. Groups may override every option below
        except ``nonfinite``.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    betas : tuple of float
        :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
    eps : float
        :math:`\epsilon \ge 0`, added to the root of the second moment.
    weight_decay : float
        As in ``torch.optim.AdamW`` / ``Adam``; plain tensors only.
    amsgrad : bool
        Use the running maximum of the second moment (plain tensors: as in torch).
    decoupled_weight_decay : bool
        ``True``: AdamW's decoupled decay; ``False``: Adam's L2 penalty.
    nonfinite : {"raise", "skip"}
        As for :class:`~grassmann_cls.RiemannianSGD`: a NaN or Inf in any
        gradient, or a gradient that could move a basis further than its
        dtype resolves (the bound of
        :func:`~grassmann_cls.optim.guard.first_bad_gradient`), raises
        :class:`~grassmann_cls.errors.NonFiniteError` or skips the whole step;
        nothing is written in either case.
    foreach : bool, optional
        As in ``torch.optim.AdamW``, for the plain tensors.

    Notes
    -----
    State per manifold parameter: ``"step"`` (int), ``"exp_avg"`` (the tangent
    first moment, shape of the parameter), ``"exp_avg_sq"`` (shape
    ``(..., 1, 1)``: one value per basis) and, with ``amsgrad``,
    ``"max_exp_avg_sq"``. State per plain tensor: exactly
    ``torch.optim.AdamW``'s.

    Examples
    --------
    >>> import torch
    >>> from grassmann_cls import GrassmannHead
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), GrassmannHead(16, 3, 2))
    >>> opt = RiemannianAdam(model.parameters(), lr=1e-3, weight_decay=0.05)
    >>> loss = model(torch.randn(4, 8)).logsumexp(-1).mean()
    >>> loss.backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        decoupled_weight_decay: bool = True,
        nonfinite: str = "raise",
        foreach: bool | None = None,
    ):
        self.nonfinite = _checks.choice("nonfinite", nonfinite, NONFINITE)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "decoupled_weight_decay": decoupled_weight_decay,
            "foreach": foreach,
        }
        _validate_group(defaults)
        with _torch_argument_errors():
            super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise ManifoldTypeError(f"a parameter group must be a dict with 'params'; got {param_group!r:.80}")
        _validate_group({**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}})
        with _torch_argument_errors():
            super().add_param_group(param_group)
        _validate_manifolds(self.param_groups[-1])

    def __setstate__(self, state):
        super().__setstate__(state)
        if not hasattr(self, "nonfinite"):
            self.nonfinite = "raise"

    def __getstate__(self):
        return {**super().__getstate__(), "nonfinite": self.nonfinite}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; a mismatching or damaged one raises and changes nothing.

        Raises
        ------
        CheckpointError
            If ``state_dict`` does not fit these parameters or holds bad
            options or non-finite moments.
        """
        if not isinstance(state_dict, dict) or not isinstance(state_dict.get("param_groups"), list):
            raise CheckpointError(f"expected an optimizer state_dict; got {type(state_dict).__name__}")
        previous = Optimizer.state_dict(self)
        try:
            super().load_state_dict(state_dict)
            _check_loaded(self)
        except (GrassmannError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
            Optimizer.load_state_dict(self, previous)
            first = " ".join(str(err).split())[:200] or type(err).__name__
            raise CheckpointError(f"optimizer state_dict does not match RiemannianAdam ({first})") from None

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
        """Refuse sparse gradients (Adam has no sparse update), before anything is written.

        Raises
        ------
        OptionError
            If any parameter has a sparse gradient.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    raise OptionError(f"RiemannianAdam needs dense gradients; got a sparse one for shape {tuple(p.shape)}")

    @torch.no_grad()
    def update(self) -> None:
        """The update of :meth:`step` alone, for gradients already checked (no scan, no ``nonfinite`` policy)."""
        for group in self.param_groups:
            self._step_plain(group, [p for p in group["params"] if p.grad is not None and not is_manifold_parameter(p)])
            for p in group["params"]:
                if p.grad is not None and is_manifold_parameter(p):
                    self._step_manifold(group, p)

    # --- plain tensors ----------------------------------------------------------
    def _step_plain(self, group: dict, params: list[torch.Tensor]) -> None:
        """Exactly ``torch.optim.AdamW.step`` (or ``Adam.step``) for these parameters."""
        if not params:
            return
        # Note [torch's Adam state]
        # As torch.optim.Adam._init_group (capturable and fused off): a float
        # "step" tensor on the CPU, zero moments laid out like the parameter.
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = torch.tensor(0.0, dtype=step_dtype, device="cpu")
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        beta1, beta2 = group["betas"]
        adam(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
            [s["step"] for s in states],
            foreach=group["foreach"],
            has_complex=any(torch.is_complex(p) for p in params),
            decoupled_weight_decay=group["decoupled_weight_decay"],
            amsgrad=group["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )

    # --- manifold parameters -----------------------------------------------------
    def _step_manifold(self, group: dict, p: torch.Tensor) -> None:
        state = self.state[p]
        manifold = p.manifold
        beta1, beta2 = group["betas"]
        rgrad = manifold.egrad2rgrad(p, p.grad)
        second = rgrad.square().mean(dim=(-2, -1), keepdim=True)
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(second)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(second)
        state["step"] += 1
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(rgrad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).add_(second, alpha=1 - beta2)
        if group["amsgrad"]:
            exp_avg_sq = torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        denominator = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(group["eps"])
        direction = torch.div(exp_avg, denominator, out=rgrad)  # rgrad's memory is free now
        manifold.retr_transp_(p, direction, exp_avg, alpha=-group["lr"] / (1 - beta1**step))


def _validate_manifolds(group: dict) -> None:
    """Every manifold parameter of ``group`` is on a manifold with the in-place methods."""
    for p in group["params"]:
        if is_manifold_parameter(p) and not isinstance(p.manifold, InPlaceManifold):
            raise ManifoldTypeError(
                f"RiemannianAdam steps manifold parameters through manifolds.InPlaceManifold's in-place methods; "
                f"a parameter of shape {tuple(p.shape)} is on {type(p.manifold).__name__}, which is not one "
                "(use geoopt.optim.RiemannianAdam for it)"
            )


def _validate_group(group: dict) -> None:
    """Check one parameter group's options (at construction, never per step)."""
    _checks.real("lr", group["lr"], minimum=0.0)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise OptionError(f"betas must be a pair of floats in [0, 1); got {betas!r}")
    for i, beta in enumerate(betas):
        value = _checks.real(f"betas[{i}]", beta, minimum=0.0)
        if value >= 1.0:
            raise OptionError(f"betas[{i}] must be in [0, 1); got {value}")
    _checks.real("eps", group["eps"], minimum=0.0)
    _checks.real("weight_decay", group["weight_decay"], minimum=0.0)
    _checks.boolean("amsgrad", group["amsgrad"])
    _checks.boolean("decoupled_weight_decay", group["decoupled_weight_decay"])
    if group.get("foreach") is not None and not isinstance(group["foreach"], bool):
        raise OptionError(f"foreach must be None or a bool; got {group['foreach']!r}")


def _check_loaded(optimizer: Optimizer) -> None:
    """Every group's options valid; every moment finite and shaped for its parameter."""
    for group in optimizer.param_groups:
        _validate_group(group)
        _validate_manifolds(group)
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                moment = state.get(key)
                if moment is None:
                    continue
                expected = p.shape if key == "exp_avg" or not is_manifold_parameter(p) else (*p.shape[:-2], 1, 1)
                if moment.shape != expected:
                    raise CheckpointError(f"{key} of shape {tuple(moment.shape)} for a parameter of shape {tuple(p.shape)}")
                if not bool(torch.isfinite(moment).all()):
                    raise CheckpointError(f"the {key} of a parameter of shape {tuple(p.shape)} holds NaN or Inf")
