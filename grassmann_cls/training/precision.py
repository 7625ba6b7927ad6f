r"""Mixed precision: ``bf16`` or ``fp16`` autocast, with a gradient scaler for ``fp16``.

Parameters, gradients, optimizer state and the Riemannian step stay in
float32: autocast only lowers the precision of the forward pass (the
:class:`~grassmann_cls.head.GrassmannHead` keeps its normalisation and norms in
float32). With ``fp16`` the loss is multiplied
by the :class:`torch.amp.GradScaler`'s scale before ``backward``; :func:`step`
divides the gradients by it (``unscale_``) before the optimizer sees them and
skips the whole step when any gradient is infinite or NaN, so that bases,
momentum buffers and every other parameter keep their values; the scale then
shrinks. ``bf16`` has float32's range and needs no scaler.
"""

from __future__ import annotations

import contextlib

import torch
from torch.optim import Optimizer

__all__ = ["AMP", "autocast", "grad_scaler", "step"]

AMP = ("bf16", "fp16")
"""Accepted values of ``amp`` (``None``: full float32)."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``amp``'s dtype on ``device``; a no-op context for ``amp=None``."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str | None) -> torch.amp.GradScaler | None:
    """A :class:`torch.amp.GradScaler` for ``fp16``, else ``None``."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def step(loss: torch.Tensor, optimizer: Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """``backward`` and ``optimizer.step()``, through ``scaler`` when given.

    With a scaler the gradients are unscaled in place before the step (the
    optimizer always sees true float32 gradients) and the step is skipped when
    one of them is not finite. Works for any optimizer whose ``param_groups``
    hold every parameter, :class:`~grassmann_cls.optim.HybridOptimizer` and
    :class:`~grassmann_cls.optim.RiemannianSGD` included.

    Parameters
    ----------
    loss : torch.Tensor
        Scalar loss, shape ``()``.
    optimizer : torch.optim.Optimizer
        With gradients zeroed (or set to ``None``) before the forward pass.
    scaler : torch.amp.GradScaler or None
        From :func:`grad_scaler`.
    """
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
