r"""Optimizers and learning-rate schedules of a :class:`~grassmann_cls.training.config.TrainConfig`.

Optimizers (``optimizer(model, config) -> torch.optim.Optimizer``):

=========  ====================================================================
``sgd``    :class:`~grassmann_cls.optim.RiemannianSGD` for every parameter (the
           paper's ResNet recipe): SGD for plain tensors, Riemannian SGD for bases
``adamw``  ``torch.optim.AdamW`` for plain tensors and Riemannian SGD for the
           bases at ``bases_lr_factor`` times the lr, one schedule for both (the
           paper's Swin-T recipe; re-orthonormalised every step with ``paper`` momentum)
=========  ====================================================================

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

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from manifolds import Registry

from grassmann_cls.optim import HybridOptimizer, RiemannianSGD, is_manifold_parameter

__all__ = ["OPTIMIZERS", "SCHEDULES", "parameter_groups", "build_scheduler", "sgd", "adamw", "cosine", "constant"]

OPTIMIZERS: Registry = Registry("optimizer")
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
    decay, no_decay, manifold = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if is_manifold_parameter(p):
            manifold.append(p)
        else:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]], manifold


@OPTIMIZERS.register
def sgd(model: nn.Module, config) -> Optimizer:
    """One :class:`RiemannianSGD` with momentum, weight decay and Nesterov from ``config``."""
    groups, manifold = parameter_groups(model, config.weight_decay)
    if manifold:
        groups.append({"params": manifold, "weight_decay": 0.0})
    return RiemannianSGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        grassmann_momentum=config.grassmann_momentum, reorth_every=config.reorth_every,
    )  # fmt: skip


@OPTIMIZERS.register
def adamw(model: nn.Module, config) -> Optimizer:
    """AdamW for plain tensors, :class:`RiemannianSGD` for the bases, in a :class:`HybridOptimizer`."""
    groups, manifold = parameter_groups(model, config.weight_decay)
    backbone = torch.optim.AdamW(groups, lr=config.lr)
    if not manifold:
        return backbone
    reorth_every = config.reorth_every
    if reorth_every is None and config.grassmann_momentum == "paper":
        reorth_every = 1  # every step inside AdamW/Lamb, as in the paper
    bases = RiemannianSGD(
        manifold, lr=config.lr * config.bases_lr_factor, momentum=config.momentum,
        grassmann_momentum=config.grassmann_momentum, reorth_every=reorth_every,
    )  # fmt: skip
    return HybridOptimizer(backbone, bases)


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
