"""One evaluation loop: summed loss and top-k hits of a model over a data set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from grassmann_cls.errors import DataError, ManifoldTypeError, OptionError, ShapeError
from grassmann_cls.training.batches import batch_source
from grassmann_cls.training.data.splits import ImageData
from grassmann_cls.training.precision import autocast

__all__ = ["topk_correct", "topk_hits", "evaluation_sums", "class_sums", "evaluate_model"]


_LABEL_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """How many labels are among the ``k`` highest logits, for each ``k``.

    Parameters
    ----------
    logits : torch.Tensor
        Shape ``(B, C)``.
    labels : torch.Tensor
        Shape ``(B,)``.
    ks : tuple of int
        Values of ``k``; ``k > C`` counts as ``k = C``.

    Returns
    -------
    torch.Tensor
        Counts of shape ``(len(ks),)``, int64.

    Raises
    ------
    ManifoldTypeError
        If ``logits`` is not a floating tensor, ``labels`` not an integer tensor or a ``k`` not an int.
    ShapeError
        If ``logits`` is not ``(B, C)`` with ``C >= 1`` or ``labels`` not ``(B,)``.
    OptionError
        If ``ks`` is empty or holds a ``k < 1``.
    DataError
        If a label is outside ``[0, C)`` (one read of ``labels``).
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = getattr(logits, "dtype", type(logits).__name__)
        raise ManifoldTypeError(f"logits must be a floating tensor; got {got}")
    if not isinstance(labels, torch.Tensor) or labels.dtype not in _LABEL_DTYPES:
        got = getattr(labels, "dtype", type(labels).__name__)
        raise ManifoldTypeError(f"labels must be an integer tensor; got {got}")
    if logits.dim() != 2 or logits.shape[1] < 1 or labels.shape != logits.shape[:1]:
        raise ShapeError(
            f"logits must be (B, C) with C >= 1 and labels (B,); got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise ManifoldTypeError(f"ks must be a tuple of ints; got {type(ks).__name__}")
    ks = tuple(ks)
    if not ks:
        raise OptionError("ks must hold at least one k; got ()")
    for k in ks:
        if isinstance(k, bool) or not hasattr(k, "__index__"):
            raise ManifoldTypeError(f"every k in ks must be an int; got {k!r}")
        if k < 1:
            raise OptionError(f"every k in ks must be >= 1; got {ks}")
    if len(labels):
        low, high = (int(v) for v in torch.aminmax(labels))
        if low < 0 or high >= logits.shape[1]:
            classes = logits.shape[1]
            raise DataError(f"labels must lie in [0, {classes}) for {classes} classes; got [{low}, {high}]")
    return topk_hits(logits, labels, ks)


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """:func:`topk_correct` without argument checks (no device sync: the loops call it every batch)."""
    # The unchecked core: the training and evaluation loops call it every batch without a device sync.
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return torch.stack([hits[:, :k].any(dim=1).sum() for k in ks])


@torch.no_grad()
def evaluation_sums(
    model: nn.Module,
    data: Dataset,
    index: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device,
    amp: str | None = None,
    workers: int = 0,
) -> torch.Tensor:
    """Summed cross-entropy, top-1 and top-5 hits, and the count, over ``data[index]``.

    In evaluation mode (the model's mode is restored), under ``amp`` autocast;
    batches are consecutive runs of ``batch_size`` entries of ``index``.

    Parameters
    ----------
    model : nn.Module
        Maps images ``(B, C, H, W)`` to logits ``(B, num_classes)``.
    data : Dataset
        As for :func:`batch_source`.
    index : torch.Tensor
        Sample indices, shape ``(N,)``.

    Returns
    -------
    torch.Tensor
        ``[loss_sum, top1, top5, N]``, float64 on ``device``; sums of
        several processes' shares add up to the whole set's.
    """
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for x, y in batch_source(data, index.split(batch_size), device, workers=workers):
            with autocast(device, amp):
                logits = model(x)
            logits = logits.float()
            sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
            sums[1:3] += topk_hits(logits, y).double()
            sums[3] += len(y)
    finally:
        model.train(was_training)
    return sums


@torch.no_grad()
def class_sums(
    model: nn.Module,
    data: Dataset,
    index: torch.Tensor,
    num_classes: int,
    *,
    batch_size: int,
    device: torch.device,
    amp: str | None = None,
    workers: int = 0,
) -> torch.Tensor:
    """Top-1 hits and samples of every class over ``data[index]``, in evaluation mode.

    Parameters are as for :func:`evaluation_sums`; ``num_classes`` is ``C``.

    Returns
    -------
    torch.Tensor
        Shape ``(2, C)``, float64 on ``device``: row 0 the correct top-1
        predictions, row 1 the samples of each class; several processes'
        shares add up to the whole set's.
    """
    sums = torch.zeros(2, num_classes, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        for x, y in batch_source(data, index.split(batch_size), device, workers=workers):
            with autocast(device, amp):
                hit = (model(x).argmax(dim=1) == y).double()
            sums[0].index_add_(0, y, hit)
            sums[1].index_add_(0, y, torch.ones_like(hit))
    finally:
        model.train(was_training)
    return sums


def evaluate_model(
    model: nn.Module, data: ImageData, *, batch_size: int = 1024, device: str | torch.device | None = None
) -> dict[str, float]:
    """Mean cross-entropy and top-1 / top-5 accuracy (percent) in evaluation mode.

    Parameters
    ----------
    model : nn.Module
        Maps images ``(B, C, H, W)`` to logits ``(B, num_classes)``; its
        training mode is restored afterwards.
    data : Dataset
        A ``TensorDataset`` ``(images (N, C, H, W), labels (N,))``, or images
        read from disk (:class:`~grassmann_cls.training.data.imagefolder.FolderImages`).
    batch_size : int
        Images per forward pass.
    device : optional
        Where to run; default: where the model's parameters are.

    Returns
    -------
    dict
        ``loss``, ``top1``, ``top5``, ``num_samples``.
    """
    if not len(data):
        raise DataError("cannot evaluate on an empty data set")
    device = torch.device(device or next(model.parameters()).device)
    index = torch.arange(len(data))
    loss, top1, top5, n = evaluation_sums(model, data, index, batch_size=batch_size, device=device).tolist()
    return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "num_samples": int(n)}
