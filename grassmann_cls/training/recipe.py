r"""Optimizers and learning-rate schedules of a :class:`~grassmann_cls.training.config.TrainConfig`.

Optimizers (``optimizer(model, config) -> torch.optim.Optimizer``):

=========  ====================================================================
``sgd``    :class:`~grassmann_cls.optim.RiemannianSGD` for every parameter (the
           paper's ResNet recipe): SGD for plain tensors, Riemannian SGD for bases
``adamw``  ``torch.optim.AdamW`` for plain tensors and Riemannian SGD for the
           bases at ``bases_lr_factor`` times the lr, one schedule for both (the
           paper's Swin-T recipe; re-orthonormalised every step with ``paper`` momentum)
=========  ====================================================================

Bases optimizers (``bases_optimizer(params, config, lr) -> torch.optim.Optimizer``),
chosen by :attr:`~grassmann_cls.training.config.TrainConfig.bases_optimizer`:

===========  ==================================================================
``rsgd``     :class:`~grassmann_cls.optim.RiemannianSGD` with the configured
             retraction, transport and momentum style (``transport`` or ``paper``)
``adam``     :class:`~grassmann_cls.optim.RiemannianAdam` (``betas[0]`` is
             ``momentum``, no weight decay) with the configured retraction and transport
``landing``  :class:`~grassmann_cls.optim.LandingSGD` (heavy-ball ``momentum``
             and ``nesterov``, default attraction and bound): no retraction,
             no transport, no re-orthonormalisation
===========  ==================================================================

The bases step at ``lr`` times ``bases_lr_factor`` when :func:`uses_bases_lr_factor`
says so (an ``adamw`` backbone, or Adam on the bases), else at ``lr``.

Weight decay applies to weights of dimension >= 2 only: never to biases,
normalisation parameters, a learned scale, or the bases.

Schedules (``schedule(step, total_steps, warmup_steps) -> multiplier of the peak lr``),
stepped once per optimiser step; the warm-up rises linearly to the peak:

============  ==================================================================
``cosine``    :math:`\tfrac12\bigl(1 + \cos(\pi\, (t - t_w) / (T - t_w))\bigr)` after warm-up
``constant``  1 after warm-up
============  ==================================================================
"""

from __future__ import annotations

import math
from types import MappingProxyType

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from grassmann_cls.optim import HybridOptimizer, LandingSGD, RiemannianAdam, RiemannianSGD, is_manifold_parameter
from manifolds import Registry

__all__ = [
    "OPTIMIZERS",
    "BASES_OPTIMIZERS",
    "SCHEDULES",
    "parameter_groups",
    "build_scheduler",
    "sgd",
    "adamw",
    "rsgd",
    "adam",
    "landing",
    "UNUSED_SETTINGS",
    "uses_bases_lr_factor",
    "build_bases_optimizer",
    "bases_lr",
    "cosine",
    "constant",
]

OPTIMIZERS: Registry = Registry("optimizer")
BASES_OPTIMIZERS: Registry = Registry("bases optimizer")
SCHEDULES: Registry = Registry("schedule")


def parameter_groups(model: nn.Module, weight_decay: float) -> tuple[list[dict], list[torch.Tensor]]:
    """Split trainable parameters into decayed and undecayed groups, and manifold parameters.

    Returns
    -------
    groups : list of dict
        ``{"params": [...], "weight_decay": ...}`` for plain tensors (empty
        groups left out).
    manifold : list of torch.Tensor
        Parameters that live on a manifold (the bases).
    """
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    manifold: list[torch.Tensor] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if is_manifold_parameter(p):
            manifold.append(p)
        else:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]], manifold


@BASES_OPTIMIZERS.register
def rsgd(params: list, config, lr: float) -> Optimizer:
    """:class:`RiemannianSGD` for the bases: momentum, Nesterov, momentum style and re-orthonormalisation."""
    return RiemannianSGD(
        params,
        lr=lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        grassmann_momentum=config.grassmann_momentum,
        reorth_every=config.reorth_every,
        reorth_qr=config.reorth_qr,
        reorth_count_from=config.reorth_count_from,
    )


@BASES_OPTIMIZERS.register
def adam(params: list, config, lr: float) -> Optimizer:
    """:class:`RiemannianAdam` for the bases, with ``betas = (momentum, 0.999)`` and no weight decay."""
    return RiemannianAdam(params, lr=lr, betas=(config.momentum, 0.999), weight_decay=0.0)


@BASES_OPTIMIZERS.register
def landing(params: list, config, lr: float) -> Optimizer:
    """:class:`LandingSGD` for the bases: heavy-ball momentum and Nesterov, no retraction."""
    return LandingSGD(params, lr=lr, momentum=config.momentum, nesterov=config.nesterov)


UNUSED_SETTINGS = MappingProxyType(
    {
        "rsgd": MappingProxyType({}),
        "adam": MappingProxyType(
            {
                "grassmann_momentum": "Adam keeps its own first moment, moved by the transport (there is no 'paper' style)",
                "reorth_every": "Adam re-orthonormalises through its retraction only",
                "reorth_qr": "Adam re-orthonormalises through its retraction only",
                "reorth_count_from": "Adam re-orthonormalises through its retraction only",
            }
        ),
        "landing": MappingProxyType(
            {
                "retraction": "landing takes no retraction step (matrix products only)",
                "transport": "landing keeps its momentum in the ambient space and never transports it",
                "grassmann_momentum": "landing keeps heavy-ball momentum on the gradient (there is no 'paper' style)",
                "reorth_every": "landing stays near the manifold through its normal term, never re-orthonormalised",
                "reorth_qr": "landing stays near the manifold through its normal term, never re-orthonormalised",
                "reorth_count_from": "landing stays near the manifold through its normal term, never re-orthonormalised",
            }
        ),
    }
)
"""For each :data:`BASES_OPTIMIZERS` name, the ``TrainConfig`` fields it never reads, and why.

A configuration that sets one of them to a non-default value is refused
(it would be ignored), and a sweep leaves such cells out.
"""


def uses_bases_lr_factor(config) -> bool:
    """Whether the bases step at ``lr * bases_lr_factor``: an ``adamw`` backbone, or Adam on the bases.

    Riemannian SGD and the other SGD-like bases optimizers take SGD's step
    sizes, so under an ``sgd`` backbone they share its ``lr``; Adam's steps
    are normalised per entry and need a scale of their own.
    """
    return config.optimizer == "adamw" or config.bases_optimizer == "adam"


def bases_lr(config) -> float:
    """The bases' (peak) learning rate of ``config``."""
    return config.lr * config.bases_lr_factor if uses_bases_lr_factor(config) else config.lr


def build_bases_optimizer(params: list, config) -> Optimizer:
    """The optimizer of the bases ``params`` under ``config``, at :func:`bases_lr` (what the recipes step them with)."""
    if (
        config.optimizer == "adamw"
        and config.bases_optimizer == "rsgd"
        and config.reorth_every is None
        and config.grassmann_momentum == "paper"
    ):
        config = config.replace(reorth_every=1)  # every step inside AdamW/Lamb, as in the paper
    return BASES_OPTIMIZERS.resolve(config.bases_optimizer)(params, config, bases_lr(config))


@OPTIMIZERS.register
def sgd(model: nn.Module, config) -> Optimizer:
    """One :class:`RiemannianSGD` with momentum, weight decay and Nesterov from ``config``.

    With another :attr:`~grassmann_cls.training.config.TrainConfig.bases_optimizer`
    than ``rsgd``, the bases get that optimizer (at :func:`bases_lr`) in a
    :class:`HybridOptimizer` beside the SGD of the other parameters.
    """
    groups, manifold = parameter_groups(model, config.weight_decay)
    if manifold and config.bases_optimizer == "rsgd":
        groups.append({"params": manifold, "weight_decay": 0.0})
    backbone = rsgd(groups, config, config.lr)
    if not manifold or config.bases_optimizer == "rsgd":
        return backbone
    return HybridOptimizer(backbone, build_bases_optimizer(manifold, config))


@OPTIMIZERS.register
def adamw(model: nn.Module, config) -> Optimizer:
    """AdamW for plain tensors, the :attr:`~grassmann_cls.training.config.TrainConfig.bases_optimizer` for the bases.

    Both in a :class:`HybridOptimizer`; the bases step at ``lr * bases_lr_factor``.
    """
    groups, manifold = parameter_groups(model, config.weight_decay)
    backbone = torch.optim.AdamW(groups, lr=config.lr)
    if not manifold:
        return backbone
    return HybridOptimizer(backbone, build_bases_optimizer(manifold, config))


def _warmup(step: int, warmup_steps: int) -> float | None:
    return (step + 1) / warmup_steps if step < warmup_steps else None


@SCHEDULES.register
def cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then half a cosine from 1 down to 0 at ``total_steps``."""
    rise = _warmup(step, warmup_steps)
    if rise is not None:
        return rise
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULES.register
def constant(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up, then 1."""
    rise = _warmup(step, warmup_steps)
    return 1.0 if rise is None else rise


class ScheduleMultiplier:
    """Picklable ``step -> multiplier`` for ``LambdaLR`` (holds the schedule by name).

    ``LambdaLR.state_dict`` stores this object's ``__dict__``: plain values only.
    """

    def __init__(self, name: str, total_steps: int, warmup_steps: int):
        self.name, self.total_steps, self.warmup_steps = name, int(total_steps), int(warmup_steps)

    def __call__(self, step: int) -> float:
        return SCHEDULES.resolve(self.name)(step, self.total_steps, self.warmup_steps)


def build_scheduler(optimizer: Optimizer, name: str, *, total_steps: int, warmup_steps: int) -> LambdaLR:
    """A per-step ``LambdaLR`` following schedule ``name`` (a :data:`SCHEDULES` entry)."""
    SCHEDULES.resolve(name)
    return LambdaLR(optimizer, ScheduleMultiplier(name, total_steps, warmup_steps))
