r"""Riemannian Adam for models whose class subspaces live on the Grassmann manifold."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import torch
from torch.optim.adam import adam

from manifolds import checks as _checks

from ..errors import OptionError
from .base import ManifoldOptimizer, check_foreach
from .guard import is_manifold_parameter

__all__ = ["RiemannianAdam"]


class RiemannianAdam(ManifoldOptimizer):
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

    _dense_gradients_only = True  # torch's Adam has no sparse update
    _geoopt_counterpart = "RiemannianAdam"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        decoupled_weight_decay: bool = True,
        nonfinite: str = "raise",
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "decoupled_weight_decay": decoupled_weight_decay,
            "foreach": foreach,
        }
        super().__init__(params, defaults, nonfinite=nonfinite)

    # --- options ---------------------------------------------------------------------
    def _validate_group(self, group: dict[str, Any]) -> None:
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
        check_foreach(group)

    def _state_shapes(self, p: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """The moments: the first shaped like ``p``; the second one per basis for manifold parameters."""
        second = (*p.shape[:-2], 1, 1) if is_manifold_parameter(p) else tuple(p.shape)
        return {"exp_avg": tuple(p.shape), "exp_avg_sq": second, "max_exp_avg_sq": second}

    # --- plain tensors ----------------------------------------------------------
    def _step_plain(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
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
            [cast(torch.Tensor, p.grad) for p in params],  # every one is set
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
    def _step_manifold(self, group: dict[str, Any], p: Any) -> None:
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
