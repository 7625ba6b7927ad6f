"""Losses for GCR heads: softmax cross-entropy with optional label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .errors import ShapeError

__all__ = ["cross_entropy", "CrossEntropyLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Softmax cross-entropy, a checked thin wrapper over ``F.cross_entropy``.

    With smoothing :math:`\epsilon` over ``C`` classes the target distribution
    is :math:`(1-\epsilon)\,\mathbb{1}_y + \epsilon / C`:

    .. math:: L = -\sum_c \bigl((1-\epsilon)[c = y] + \epsilon/C\bigr)
              \log\operatorname{softmax}(\ell)_c .

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(B, C)``.
    target : torch.Tensor
        Class indices of shape ``(B,)`` (int64), or class probabilities of
        shape ``(B, C)`` (e.g. from mixup).
    label_smoothing : float
        :math:`\epsilon \in [0, 1)`.
    reduction : {"mean", "sum", "none"}
        As in ``F.cross_entropy``.

    Returns
    -------
    torch.Tensor
        A scalar, or shape ``(B,)`` for ``reduction="none"``.
    """
    eps = _checks.real("label_smoothing", label_smoothing, minimum=0.0, maximum=1.0, strict_max=True)
    _checks.choice("reduction", reduction, _REDUCTIONS)
    if logits.dim() != 2:
        raise ShapeError(f"logits must have shape (B, C); got {tuple(logits.shape)}")
    probabilities = target.is_floating_point()
    expected = tuple(logits.shape) if probabilities else logits.shape[:1]
    if tuple(target.shape) != tuple(expected):
        raise ShapeError(f"target must have shape {tuple(expected)}; got {tuple(target.shape)}")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, target, label_smoothing=eps, reduction=reduction)


class CrossEntropyLoss(nn.Module):
    """Module form of :func:`cross_entropy`.

    Parameters
    ----------
    label_smoothing : float
        :math:`\\epsilon \\in [0, 1)`.
    reduction : {"mean", "sum", "none"}
        As in ``F.cross_entropy``.
    """

    def __init__(self, *, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__()
        self.label_smoothing = _checks.real("label_smoothing", label_smoothing, minimum=0.0, maximum=1.0, strict_max=True)
        self.reduction = _checks.choice("reduction", reduction, _REDUCTIONS)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, target, label_smoothing=self.label_smoothing, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, reduction={self.reduction!r}"
