"""Accuracy and feature analysis of a model or of a saved checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from .analysis import class_principal_angles, distinct_pairs, feature_statistics
from .backbones import Backbone, extract_features
from .checkpoint import check_manifold_parameters, load_checkpoint
from .config import TrainConfig
from .data import DataSplits, prepare
from .errors import CheckpointError, DataError, GrassmannError, ManifoldTypeError, OptionError, ShapeError
from .models import build_model

__all__ = ["topk_correct", "evaluate_model", "load_model", "checkpoint_data", "evaluate", "analyze"]


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
    return _topk_correct(logits, labels, ks)


def _topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    # The unchecked core: the training and evaluation loops call it every batch without a device sync.
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return torch.stack([hits[:, :k].any(dim=1).sum() for k in ks])


@torch.no_grad()
def evaluate_model(
    model: nn.Module, data: TensorDataset, *, batch_size: int = 1024, device: str | torch.device | None = None
) -> dict[str, float]:
    """Mean cross-entropy and top-1 / top-5 accuracy (percent) in evaluation mode.

    Parameters
    ----------
    model : nn.Module
        Maps images ``(B, C, H, W)`` to logits ``(B, num_classes)``; its
        training mode is restored afterwards.
    data : TensorDataset
        ``(images (N, C, H, W), labels (N,))``, or images read from disk
        (:class:`~grassmann_cls.data.imagefolder.FolderImages`).
    batch_size : int
        Images per forward pass.
    device : optional
        Where to run; default: where the model's parameters are.

    Returns
    -------
    dict
        ``loss``, ``top1``, ``top5``, ``num_samples``.
    """
    if not isinstance(data, TensorDataset):
        from .batches import evaluation_sums

        if not len(data):
            raise DataError("cannot evaluate on an empty data set")
        device = torch.device(device or next(model.parameters()).device)
        loss, top1, top5, n = evaluation_sums(model, data, torch.arange(len(data)), batch_size=batch_size,
                                              device=device).tolist()  # fmt: skip
        return {"loss": loss / n, "top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "num_samples": int(n)}
    images, labels = data.tensors
    if not len(labels):
        raise DataError("cannot evaluate on an empty data set")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss, counts = torch.zeros((), dtype=torch.float64), torch.zeros(2, dtype=torch.int64)
    try:
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            logits = model(x).float()
            loss += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            counts += _topk_correct(logits, y).cpu()
    finally:
        model.train(was_training)
    n = len(labels)
    return {"loss": float(loss) / n, "top1": 100.0 * int(counts[0]) / n, "top5": 100.0 * int(counts[1]) / n,
            "num_samples": n}  # fmt: skip


def load_model(
    checkpoint: str | os.PathLike | dict[str, Any], *, device: str = "cpu", reproject: bool = False
) -> tuple[Backbone, dict]:
    """Rebuild the model of a checkpoint and load its weights.

    Parameters
    ----------
    checkpoint : path-like or dict
        A file written by :func:`~grassmann_cls.train.train`, or its loaded payload.
    device : str
        Where to put the model.
    reproject : bool
        Re-orthonormalise bases that are off their manifold (an edited file),
        with a ``RuntimeWarning``, instead of raising :class:`CheckpointError`.

    Returns
    -------
    model : Backbone
        In evaluation mode.
    payload : dict
        The checkpoint (see :mod:`grassmann_cls.checkpoint`).

    Raises
    ------
    CheckpointError
        Missing, corrupt or inconsistent checkpoint.
    """
    payload = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location=device)
    where = "the checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
    try:
        config = TrainConfig.from_dict({**payload["config"], "resume": None, "output": None})
        data = payload["data"]
        model = build_model(config, tuple(data["image_shape"]), int(data["num_classes"]))
    except (GrassmannError, KeyError, TypeError) as err:
        raise CheckpointError(f"{where} holds an unusable configuration ({err})") from None
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise CheckpointError(f"{where} does not match its model ({first})") from None
    check_manifold_parameters(model, where, reproject=reproject)
    return model.to(device).eval(), payload


def checkpoint_data(payload: dict, *, dataset: str | None = None, data_dir: str | None = None) -> DataSplits:
    """The data a checkpoint was trained on (or ``dataset`` prepared the same way), checked against it."""
    config = payload["config"]
    splits = prepare(
        dataset or config["dataset"], data_dir=data_dir or config.get("data_dir"), classes=config.get("classes"),
        train_size=config.get("train_size"), test_size=config.get("test_size"),
        image_size=config.get("image_size"), seed=config.get("seed", 0),
    )  # fmt: skip
    info = payload["data"]
    if tuple(splits.image_shape) != tuple(info["image_shape"]) or splits.num_classes != info["num_classes"]:
        raise DataError(
            f"{splits.name} has images {splits.image_shape} and {splits.num_classes} classes but the model was "
            f"trained on {tuple(info['image_shape'])} and {info['num_classes']}; pass a matching --dataset"
        )
    return splits


def evaluate(
    checkpoint: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    batch_size: int = 1024,
    device: str = "cpu",
    reproject: bool = False,
) -> dict[str, Any]:
    """Top-1 / top-5 accuracy (percent) of a checkpoint on a split of its data set.

    Parameters
    ----------
    checkpoint : path-like
        A ``checkpoint.pt`` written by training.
    dataset : str, optional
        Another data set name or path (same image shape and classes);
        default: the one it was trained on, selected the same way.
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    split : {"test", "train"}
        Which split to score.
    batch_size : int
        Images per forward pass.
    device : str
        Where to run.
    reproject : bool
        As for :func:`load_model`.

    Returns
    -------
    dict
        ``loss, top1, top5, num_samples`` plus ``checkpoint, dataset, split, epoch``.
    """
    if split not in ("test", "train"):
        raise DataError(f"split must be 'test' or 'train'; got {split!r}")
    model, payload = load_model(checkpoint, device=device, reproject=reproject)
    splits = checkpoint_data(payload, dataset=dataset, data_dir=data_dir)
    metrics = evaluate_model(model, getattr(splits, split), batch_size=batch_size)
    return {**metrics, "checkpoint": str(Path(checkpoint)), "dataset": splits.name, "split": split,
            "epoch": int(payload["epoch"])}  # fmt: skip



def analyze(
    checkpoint: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    batch_size: int = 1024,
    device: str = "cpu",
    reproject: bool = False,
) -> dict[str, Any]:
    """Feature statistics and class-subspace principal angles of a checkpoint.

    Parameters are as for :func:`evaluate`.

    Returns
    -------
    dict
        ``variability`` (degrees), ``r2``, principal-angle summaries (degrees,
        see :func:`~grassmann_cls.analysis.feature_statistics`),
        ``principal_angles`` (every angle of every class pair, degrees, flat
        list), ``subspace_dim``, plus ``checkpoint, dataset, split, epoch``.
    """
    if split not in ("test", "train"):
        raise DataError(f"split must be 'test' or 'train'; got {split!r}")
    model, payload = load_model(checkpoint, device=device, reproject=reproject)
    splits = checkpoint_data(payload, dataset=dataset, data_dir=data_dir)
    features, labels = extract_features(model, getattr(splits, split), batch_size=batch_size)
    stats = feature_statistics(features, labels, model.fc)
    angles = torch.rad2deg(distinct_pairs(class_principal_angles(model.fc)))
    return {**stats, "subspace_dim": angles.shape[-1], "principal_angles": angles.flatten().tolist(),
            "checkpoint": str(Path(checkpoint)), "dataset": splits.name, "split": split,
            "epoch": int(payload["epoch"])}  # fmt: skip
