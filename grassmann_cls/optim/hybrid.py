r"""One learning-rate schedule for a ``torch.optim`` backbone and Riemannian-SGD bases.

The paper trains Swin-T and DeiT3 backbones with AdamW or Lamb while the class
bases keep their Riemannian SGD (momentum 0.9), with the bases' learning rate
following the backbone's schedule times a constant factor. Here that is a
:class:`HybridOptimizer`: several optimizers that an
``torch.optim.lr_scheduler`` sees as one.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from manifolds import checks as _checks

from ..errors import CheckpointError, ConfigError, GrassmannError, ManifoldTypeError, OptionError
from .adam import RiemannianAdam
from .base import ManifoldOptimizer
from .guard import NONFINITE, apply_nonfinite_policy, is_manifold_parameter
from .landing import LandingSGD
from .rsgd import RiemannianSGD

_BASES_OPTIMIZERS = ("rsgd", "adam", "landing")  # the names of grassmann_cls.training.recipe.BASES_OPTIMIZERS

__all__ = ["HybridOptimizer", "hybrid_optimizer", "split_parameters"]


class HybridOptimizer(Optimizer):
    r"""Several optimizers stepped together and scheduled as one.

    ``param_groups`` is the concatenation of the inner optimizers' groups (the
    same dictionaries, not copies), so any ``torch.optim.lr_scheduler`` built
    on the hybrid sets every group's ``lr``. A scheduler computes each group's
    lr from that group's initial lr; schedules that multiply every group by the
    same factor (``LambdaLR``, ``StepLR``, ``MultiStepLR``, ``ExponentialLR``,
    ``LinearLR``, ``CosineAnnealingLR`` with ``eta_min=0``, ...) therefore keep
    the ratio of the initial lrs at every step. Schedulers that set absolute
    lrs (``OneCycleLR``, ``CyclicLR``) need one value per group, e.g.
    ``max_lr=[g["lr"] for g in hybrid.param_groups]`` (with a scalar
    ``max_lr`` every group would get the same lr).

    Momentum cycling (``cycle_momentum=True``, those schedulers' default)
    works: when every group has a ``momentum`` (SGD-like) or ``betas``
    (Adam-like) entry, the hybrid offers ``momentum`` in :attr:`defaults`
    and gives each Adam-like group a ``momentum`` entry equal to its
    ``beta1``; a scheduler writes ``momentum`` and the hybrid copies it into
    ``betas[0]`` before each step, which is how these schedulers cycle
    ``beta1`` of a lone Adam. So in an Adam-like group of a hybrid, set
    ``momentum`` rather than ``betas[0]``. When some group has neither
    entry, ``defaults`` has no ``momentum`` and such a scheduler asks for
    ``cycle_momentum=False``.

    Parameters
    ----------
    *optimizers : torch.optim.Optimizer
        At least one; no parameter may belong to two of them. They are stepped
        in the order given.
    nonfinite : {"raise", "skip"}, optional
        What to do when any gradient, of any inner optimizer, is unusable
        (see :func:`~grassmann_cls.optim.guard.first_bad_gradient`): raise
        :class:`~grassmann_cls.errors.NonFiniteError` or skip the whole step.
        All gradients are checked before any inner optimizer steps, so a NaN
        in the backbone's gradients never reaches the backbone either.
        Default: the policy of the inner
        :class:`~grassmann_cls.optim.ManifoldOptimizer` optimizers (which
        must agree), else ``"raise"``.

    Attributes
    ----------
    optimizers : list of torch.optim.Optimizer
        The inner optimizers; ``state_dict`` is the list of theirs.
    """

    def __init__(self, *optimizers: Optimizer, nonfinite: str | None = None):
        if not optimizers:
            raise ConfigError("HybridOptimizer needs at least one optimizer; got none")
        for opt in optimizers:
            if not isinstance(opt, Optimizer):
                raise ManifoldTypeError(f"expected torch.optim.Optimizer instances; got {type(opt).__name__}")
        self.nonfinite = _policy(optimizers, nonfinite)
        params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
        if len({id(p) for p in params}) != len(params):
            raise ConfigError("a parameter belongs to more than one of the optimizers")
        self._initializing = True
        super().__init__(params, {})
        self._initializing = False
        self._attach(list(optimizers))

    def _attach(self, optimizers: list[Optimizer]) -> None:
        self.optimizers = optimizers
        self.param_groups = [g for opt in optimizers for g in opt.param_groups]
        # torch types state as a defaultdict; here it is a read-through view of the inner optimizers' states.
        self.state = ChainMap(*(opt.state for opt in optimizers))  # type: ignore[assignment]
        # Note [one momentum for schedulers]
        # OneCycleLR and CyclicLR read one flag for all groups: "betas" in
        # defaults (cycle betas[0]) or "momentum" in defaults (cycle
        # "momentum"). The hybrid says "momentum" and mirrors it into betas[0]
        # of Adam-like groups (_sync_beta1), so both kinds of groups cycle.
        if all("momentum" in g or "betas" in g for g in self.param_groups):
            for g in self.param_groups:
                if "momentum" not in g:
                    g["momentum"] = g["betas"][0]
            self.defaults = {**self.defaults, "momentum": self.param_groups[0]["momentum"]}
        else:
            self.defaults = {k: v for k, v in self.defaults.items() if k != "momentum"}

    def _sync_beta1(self) -> None:
        """Copy ``momentum`` into ``betas[0]`` of Adam-like groups (what a momentum-cycling scheduler wrote)."""
        for g in self.param_groups:
            if "betas" in g and "momentum" in g and g["betas"][0] != g["momentum"]:
                g["betas"] = (g["momentum"], *g["betas"][1:])

    def add_param_group(self, param_group: dict) -> None:
        if getattr(self, "_initializing", False):
            return super().add_param_group(param_group)
        raise ConfigError("add parameter groups to one of HybridOptimizer.optimizers, not to the hybrid")

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Evaluate ``closure`` once (if given), check every gradient, then step every inner optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            if isinstance(opt, ManifoldOptimizer):
                opt.check_gradients()
        if not apply_nonfinite_policy(self.param_groups, self.nonfinite):
            return loss
        self._sync_beta1()
        for opt in self.optimizers:
            # Every gradient was checked above: step ours without their own scan.
            opt.update() if isinstance(opt, ManifoldOptimizer) else opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        inner = state_dict.get("optimizers") if isinstance(state_dict, dict) else None
        if not isinstance(inner, list) or len(inner) != len(self.optimizers):
            got = len(inner) if isinstance(inner, list) else type(state_dict).__name__
            raise ConfigError(f"expected a HybridOptimizer state_dict of {len(self.optimizers)} optimizers; got {got}")
        previous = [opt.state_dict() for opt in self.optimizers]
        try:
            for opt, sd in zip(self.optimizers, inner):
                opt.load_state_dict(sd)
        except (GrassmannError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
            for opt, sd in zip(self.optimizers, previous):
                Optimizer.load_state_dict(opt, sd)
            if isinstance(err, GrassmannError):
                raise
            first = " ".join(str(err).split())[:200] or type(err).__name__
            raise CheckpointError(f"optimizer state_dict does not match the HybridOptimizer ({first})") from None
        finally:
            self._attach(self.optimizers)

    def __getstate__(self):
        return {"optimizers": self.optimizers, "defaults": self.defaults, "nonfinite": self.nonfinite}

    def __setstate__(self, state):
        super().__setstate__({"defaults": state.get("defaults", {}), "state": {}, "param_groups": []})
        self.nonfinite = state.get("nonfinite", "raise")
        self._attach(state["optimizers"])

    def __repr__(self) -> str:
        inner = ",\n".join("  " + repr(opt).replace("\n", "\n  ") for opt in self.optimizers)
        return f"{type(self).__name__}(\n{inner}\n)"


def _policy(optimizers, nonfinite: str | None) -> str:
    """The hybrid's non-finite policy: as given, else the inner ManifoldOptimizers' (which must agree)."""
    if nonfinite is not None:
        return _checks.choice("nonfinite", nonfinite, NONFINITE)
    inner = {opt.nonfinite for opt in optimizers if isinstance(opt, ManifoldOptimizer)}
    if len(inner) > 1:
        raise ConfigError(f"the inner manifold optimizers disagree on nonfinite ({sorted(inner)}); pass nonfinite=")
    return inner.pop() if inner else "raise"


# Optimizers accept (name, tensor) pairs from torch 2.6 on.
_NAMED_PARAMETERS = torch.torch_version.TorchVersion(torch.__version__) >= "2.6"


def split_parameters(params) -> tuple[list, list]:
    """Split parameters (a module, parameters, or named parameters) into ``(plain, manifold)``.

    Items keep their form: ``(name, tensor)`` pairs stay pairs. A module gives
    named parameters where the installed torch's optimizers accept them (so
    errors can name the parameter), plain tensors otherwise.
    """
    if isinstance(params, nn.Module):
        params = params.named_parameters() if _NAMED_PARAMETERS else params.parameters()
    if isinstance(params, (torch.Tensor, str, bytes, dict)) or not isinstance(params, Iterable):
        raise ManifoldTypeError(
            f"params must be a module, an iterable of parameters or of (name, parameter) pairs; "
            f"got {type(params).__name__}"
        )
    plain: list[Any] = []
    manifold: list[Any] = []
    for item in params:
        tensor = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        if not isinstance(tensor, torch.Tensor):
            raise ManifoldTypeError(f"params must hold tensors or (name, tensor) pairs; got {type(item).__name__}")
        (manifold if is_manifold_parameter(tensor) else plain).append(item)
    return plain, manifold


def hybrid_optimizer(
    params: nn.Module | Iterable,
    backbone: type[Optimizer] | Callable[..., Optimizer] = torch.optim.AdamW,
    *,
    lr: float,
    bases_lr_factor: float,
    momentum: float = 0.9,
    grassmann_momentum: str = "paper",
    reorth_every: int | None = 1,
    nonfinite: str = "raise",
    bases_optimizer: str = "rsgd",
    **backbone_kwargs,
) -> HybridOptimizer:
    r"""The paper's recipe for AdamW / Lamb backbones: any optimizer + RSGD bases.

    Plain parameters go to ``backbone(plain, lr=lr, **backbone_kwargs)``;
    manifold parameters (the head's bases) to :class:`RiemannianSGD` with
    learning rate ``bases_lr_factor * lr`` and the paper's settings (momentum
    0.9, ``"paper"`` momentum, re-orthonormalisation every step). A scheduler
    on the returned :class:`HybridOptimizer` drives both, keeping

    .. math:: \eta_\text{bases}(t) = \texttt{bases_lr_factor} \cdot \eta_\text{backbone}(t)

    for multiplicative schedules. Choose ``bases_lr_factor`` as the bases' peak
    lr over the backbone's: the paper's bases peak at 0.1 under AdamW (Swin-T)
    and 0.3 under Lamb (DeiT3), e.g. factor 100 for an AdamW peak of 1e-3.

    Parameters
    ----------
    params : nn.Module or iterable
        The model (or its parameters / named parameters).
    backbone : optimizer class or callable
        Called as ``backbone(plain_params, lr=lr, **backbone_kwargs)``.
    lr : float
        The backbone's (peak) learning rate.
    bases_lr_factor : float
        Bases lr over backbone lr, ``> 0``.
    momentum, grassmann_momentum, reorth_every
        For the bases' :class:`RiemannianSGD`; with ``bases_optimizer="adam"``
        they have no meaning and must keep their defaults. With
        ``bases_optimizer="landing"``, ``momentum`` is the landing momentum and
        the other two must keep their defaults.
    nonfinite : {"raise", "skip"}
        For the bases' optimizer and the hybrid.
    bases_optimizer : {"rsgd", "adam", "landing"}
        ``"rsgd"``: :class:`RiemannianSGD` as above. ``"adam"``:
        :class:`~grassmann_cls.RiemannianAdam` with its default betas and eps
        and no weight decay, at ``bases_lr_factor * lr``. ``"landing"``:
        :class:`~grassmann_cls.LandingSGD` with ``momentum`` and its default
        attraction and bound, at ``bases_lr_factor * lr`` (no retraction).
    **backbone_kwargs
        E.g. ``weight_decay``, ``betas``.

    Returns
    -------
    HybridOptimizer
        ``optimizers[0]`` the backbone's (if there are plain parameters), the
        last the bases' optimizer.

    Raises
    ------
    OptionError
        If ``bases_optimizer="adam"`` is given a non-default ``momentum``,
        ``grassmann_momentum`` or ``reorth_every``, or ``bases_optimizer="landing"``
        a non-default ``grassmann_momentum`` or ``reorth_every`` (options of
        Riemannian SGD that these optimizers do not have).
    """
    factor = _checks.real("bases_lr_factor", bases_lr_factor, minimum=0.0, strict=True)
    lr = _checks.real("lr", lr, minimum=0.0)
    if not callable(backbone):
        raise ManifoldTypeError(f"backbone must be an optimizer class or callable; got {type(backbone).__name__}")
    plain, manifold = split_parameters(params)
    if not manifold:
        raise ConfigError("hybrid_optimizer found no manifold parameters (is there a GrassmannHead?)")
    name = _checks.choice("bases_optimizer", bases_optimizer, _BASES_OPTIMIZERS)
    given = {"momentum": momentum, "grassmann_momentum": grassmann_momentum, "reorth_every": reorth_every}
    ignored = [
        f"{key}={value!r}"
        for key, value in given.items()
        if key in _UNUSED.get(name, ()) and value != _SGD_DEFAULTS[key]
    ]
    if ignored:
        raise OptionError(f"bases_optimizer={name!r} has no {', '.join(ignored)} (options of Riemannian SGD)")
    bases: ManifoldOptimizer
    if name == "adam":
        bases = RiemannianAdam(manifold, lr=lr * factor, weight_decay=0.0, nonfinite=nonfinite)
    elif name == "landing":
        bases = LandingSGD(manifold, lr=lr * factor, momentum=momentum, nonfinite=nonfinite)
    else:
        bases = RiemannianSGD(
            manifold,
            lr=lr * factor,
            momentum=momentum,
            grassmann_momentum=grassmann_momentum,
            reorth_every=reorth_every,
            nonfinite=nonfinite,
        )
    if not plain:
        return HybridOptimizer(bases, nonfinite=nonfinite)
    return HybridOptimizer(_backbone_optimizer(backbone, plain, lr, backbone_kwargs), bases, nonfinite=nonfinite)


_SGD_DEFAULTS = {"momentum": 0.9, "grassmann_momentum": "paper", "reorth_every": 1}
# The Riemannian SGD options each other bases optimizer lacks (refused unless left at their defaults).
_UNUSED = {
    "adam": ("momentum", "grassmann_momentum", "reorth_every"),
    "landing": ("grassmann_momentum", "reorth_every"),
}


def _backbone_optimizer(backbone, plain: list, lr: float, kwargs: dict) -> Optimizer:
    """``backbone(plain, lr=lr, **kwargs)``, its argument errors turned into :class:`ConfigError`."""
    name = getattr(backbone, "__name__", type(backbone).__name__)
    try:
        return backbone(plain, lr=lr, **kwargs)
    except GrassmannError:
        raise
    except (TypeError, ValueError) as err:
        message = " ".join(str(err).split())
        raise ConfigError(f"the backbone optimizer {name} rejected its arguments {sorted(kwargs)}: {message}") from err
