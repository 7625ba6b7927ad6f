r"""Landing SGD: retraction-free optimisation of Grassmann bases (Ablin & Peyré 2022; Ablin et al. 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from manifolds import checks as _checks

from ..errors import OptionError
from .base import ManifoldOptimizer, check_sgd_options, sgd_step

__all__ = ["LandingSGD"]


class LandingSGD(ManifoldOptimizer):
    r"""SGD for plain tensors and the landing method for Grassmann bases, in one optimizer.

    Plain tensors are stepped by the same function as :class:`torch.optim.SGD`
    (identical results and state). A manifold parameter's bases :math:`S_c`
    (shape ``(..., n, k)``) are never retracted: each step moves them by
    matrix products alone along the landing field (Ablin & Peyré, 2022;
    Ablin, Vary, Gao & Absil, 2024), the relative gradient plus a normal
    term that pulls them back toward orthonormality, with heavy-ball momentum
    on the gradient. With Euclidean gradient :math:`G`, momentum :math:`\mu`,
    dampening :math:`\tau`, attraction :math:`\lambda` and bound
    :math:`\varepsilon`, for each basis :math:`S`:

    .. math:: B \leftarrow \mu B + (1-\tau) G \;(B_0 = G), \qquad
              \Lambda = B\,S^TS - S\,B^TS + \lambda\,S(S^TS - I), \qquad
              S \leftarrow S - \min(\eta, \eta^*_S)\,\Lambda.

    The first term is :math:`\psi S` with :math:`\psi = BS^T - SB^T` skew
    (the relative gradient); for an orthonormal :math:`S` and a loss that
    depends on :math:`S` only through its span it is the Riemannian gradient
    :math:`(I - SS^T)B` that :class:`RiemannianSGD` uses, so learning rates
    carry over. The normal term is not accumulated in the momentum: it is
    evaluated at the current basis every step. :math:`\eta^*_S` is the safe
    step (:func:`manifolds.landing.safe_step_size`, one per basis): from
    :math:`\|S^TS - I\|_F \le \varepsilon` every step stays within
    :math:`\varepsilon`, and the iterates land on the manifold
    (:math:`S^TS \to I`) as the relative gradient vanishes. Everything is
    equivariant under :math:`S \to SQ`: the trajectory from a start
    :math:`S_0Q` is the trajectory from :math:`S_0` times :math:`Q`.

    **What the head computes meanwhile.** :class:`~grassmann_cls.GrassmannHead`'s
    logit :math:`s\,\|S_c^Tx\|/\|x\|` is then not a projection norm: with
    :math:`S_c = U\Sigma V^T`, :math:`\|S_c^Tx\| = \|\Sigma U^Tx\|`, the norm
    of the projection of :math:`x` onto :math:`\operatorname{span}(S_c)`
    times a factor in :math:`[\sigma_{\min}, \sigma_{\max}]` of :math:`S_c`,
    and :math:`\|S_c^TS_c - I\|_F \le \varepsilon` puts both in
    :math:`[\sqrt{1-\varepsilon}, \sqrt{1+\varepsilon}]`. The default
    :math:`\varepsilon = 0.1` keeps every logit within 5 % of the
    projection-norm logit of the subspace; bases are exactly orthonormal
    again after ``manifold.projx_`` (e.g. before export), which changes no
    subspace.

    Manifold parameters must be on a manifold that takes landing steps
    (:meth:`manifolds.Grassmann.landing_step_`); others (e.g.
    :class:`~manifolds.PaddedGrassmann`) are refused at construction.

    Parameters
    ----------
    params : iterable
        Parameters, named parameters or parameter groups. Groups may override
        every option below except ``nonfinite``.
    lr : float
        Learning rate :math:`\eta \ge 0` (the largest step for bases).
    momentum, dampening, weight_decay : float
        As in ``torch.optim.SGD``; ``weight_decay`` applies to plain tensors only.
    nesterov : bool
        Nesterov momentum (direction :math:`G + \mu B`).
    attraction : float
        :math:`\lambda > 0`, the weight of the normal term (default 1).
    bound : float
        :math:`\varepsilon \in (0, 1)`, the largest :math:`\|S^TS - I\|_F` a step may reach.
    nonfinite : {"raise", "skip"}
        As for :class:`~grassmann_cls.RiemannianSGD`: a NaN/Inf gradient (or one
        too large for the dtype) raises, or skips the whole step with a warning;
        nothing is written in either case.
    foreach : bool, optional
        As in ``torch.optim.SGD``, for the plain tensors.

    Notes
    -----
    State per basis: ``"momentum_buffer"`` (when ``momentum > 0``) and
    ``"step"``; per plain tensor: ``"momentum_buffer"`` as ``torch.optim.SGD``.
    Cost per step and basis: two ``k x k`` Gram matrices, two ``n x k``
    products and elementwise passes; no factorisation and no host sync.

    Examples
    --------
    >>> import torch
    >>> from grassmann_cls import GrassmannHead
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), GrassmannHead(16, 3, 2))
    >>> opt = LandingSGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> model(torch.randn(4, 8)).logsumexp(-1).mean().backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        attraction: float = 1.0,
        bound: float = 0.1,
        nonfinite: str = "raise",
        foreach: bool | None = None,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "attraction": attraction,
            "bound": bound,
            "foreach": foreach,
        }
        super().__init__(params, defaults, nonfinite=nonfinite)

    def _validate_group(self, group: dict[str, Any]) -> None:
        """Check one parameter group's options (at construction, never per step)."""
        check_sgd_options(group)
        attraction = _checks.real("attraction", group["attraction"], minimum=0.0)
        if attraction <= 0:
            raise OptionError(f"attraction must be > 0; got {attraction}")
        bound = _checks.real("bound", group["bound"], minimum=0.0, maximum=1.0)
        if not 0 < bound < 1:
            raise OptionError(f"bound must satisfy 0 < bound < 1; got {bound}")

    def _validate_manifold_parameter(self, group: dict[str, Any], p: Any) -> None:
        """The manifold takes landing steps (e.g. not :class:`~manifolds.PaddedGrassmann`)."""
        p.manifold.check_landing()

    def _step_plain(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """Exactly ``torch.optim.SGD.step`` for these parameters."""
        sgd_step(self, group, params)

    def _step_manifold(self, group: dict[str, Any], p: Any) -> None:
        state = self.state[p]
        state["step"] = state.get("step", 0) + 1
        buf = p.manifold.landing_step_(
            p,
            p.grad,
            state.get("momentum_buffer"),
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            attraction=group["attraction"],
            bound=group["bound"],
        )
        if buf is not None:
            state["momentum_buffer"] = buf
