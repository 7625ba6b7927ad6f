"""Losses for GCR heads: softmax cross-entropy with optional label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks
from .errors import DataError, ManifoldTypeError, ShapeError

__all__ = ["cross_entropy", "CrossEntropyLoss"]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

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

    Raises
    ------
    ShapeError, ManifoldTypeError, OptionError, DataError
        For arguments that break the above. Finite values are not checked
        (this runs every step): NaN logits give a NaN loss.
    """
    eps = _checks.real("label_smoothing", label_smoothing, minimum=0.0, maximum=1.0, strict_max=True)
    _checks.choice("reduction", reduction, _REDUCTIONS)
    _checks.tensor("logits", logits, dtypes=_FLOATS)
    _checks.tensor("target", target, dtypes=None)
    if logits.dim() != 2:
        raise ShapeError(f"logits must have shape (B, C); got {tuple(logits.shape)}")
    if target.is_complex() or target.dtype == torch.bool:
        raise ManifoldTypeError(f"target must hold int class indices or float probabilities; got {target.dtype}")
    if target.device != logits.device:
        raise ManifoldTypeError(f"target is on {target.device} but logits are on {logits.device}")
    probabilities = target.is_floating_point()
    expected = tuple(logits.shape) if probabilities else logits.shape[:1]
    if tuple(target.shape) != tuple(expected):
        raise ShapeError(f"target must have shape {tuple(expected)}; got {tuple(target.shape)}")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    target = target.to(logits.dtype) if probabilities else target.long()
    try:
        return F.cross_entropy(logits, target, label_smoothing=eps, reduction=reduction)
    except (IndexError, RuntimeError) as err:
        # Note [target range]: checking 0 <= target < C up front would cost a
        # host sync every training step; torch checks it anyway (on CPU), so
        # its error is translated instead.
        raise DataError(
            f"target must hold class indices in [0, {logits.shape[1]}); {' '.join(str(err).split())}"
        ) from None


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
