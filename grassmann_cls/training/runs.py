"""What a finished run gives: its model rebuilt from the checkpoint, its accuracy and its feature analysis."""

from __future__ import annotations

import os
from typing import Any

import torch

from grassmann_cls.errors import CheckpointError, DataError, GrassmannError
from grassmann_cls.head import GrassmannHead
from grassmann_cls.training.analysis import class_principal_angles, feature_statistics, pair_angles
from grassmann_cls.training.backbones import Backbone, extract_features
from grassmann_cls.training.checkpoint import check_manifold_parameters, load_checkpoint, resolve_checkpoint
from grassmann_cls.training.config import TrainConfig
from grassmann_cls.training.data import DataSplits, prepare
from grassmann_cls.training.evaluation import evaluate_model
from grassmann_cls.training.models import build_model

__all__ = ["load_model", "checkpoint_data", "evaluate", "analyze"]


def load_model(
    checkpoint: str | os.PathLike | dict[str, Any], *, device: str = "cpu", reproject: bool = False
) -> tuple[Backbone, dict]:
    """Rebuild the model of a checkpoint and load its weights.

    Parameters
    ----------
    checkpoint : path-like or dict
        A file written by :func:`~grassmann_cls.training.train.train`, its run
        folder (holding ``checkpoint.pt``), or its loaded payload.
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
        The checkpoint (see :mod:`grassmann_cls.training.checkpoint`).

    Raises
    ------
    CheckpointError
        Missing, corrupt or inconsistent checkpoint.
    """
    if not isinstance(checkpoint, dict):
        checkpoint = resolve_checkpoint(checkpoint)
    payload = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location=device)
    where = "the checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
    try:
        config = TrainConfig.from_saved({**payload["config"], "resume": None, "output": None})
        data = payload["data"]
        model = build_model(config, tuple(data["image_shape"]), int(data["num_classes"]))
    except (GrassmannError, KeyError, TypeError) as err:
        raise CheckpointError(f"{where} holds an unusable configuration ({err})") from None
    for head in model.modules():  # one mechanism with the library's load_state_dict (GrassmannHead docs)
        if isinstance(head, GrassmannHead):
            head.reproject_on_load = reproject
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
        dataset or config["dataset"],
        data_dir=data_dir or config.get("data_dir"),
        classes=config.get("classes"),
        train_size=config.get("train_size"),
        test_size=config.get("test_size"),
        image_size=config.get("image_size"),
        seed=config.get("seed", 0),
        imbalance_ratio=config.get("imbalance_ratio"),
    )
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
        A ``checkpoint.pt`` written by training, or its run folder.
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
    return {
        **metrics,
        "checkpoint": str(resolve_checkpoint(checkpoint)),
        "dataset": splits.name,
        "split": split,
        "epoch": int(payload["epoch"]),
    }


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
        see :func:`~grassmann_cls.training.analysis.feature_statistics`),
        ``principal_angles`` (every angle of every class pair, degrees, flat
        list; a pair of classes with ``k_i != k_j`` has ``min(k_i, k_j)``
        angles), ``subspace_dim`` (the head's: an int, or one ``k_c`` per
        class), plus ``checkpoint, dataset, split, epoch``.
    """
    if split not in ("test", "train"):
        raise DataError(f"split must be 'test' or 'train'; got {split!r}")
    model, payload = load_model(checkpoint, device=device, reproject=reproject)
    splits = checkpoint_data(payload, dataset=dataset, data_dir=data_dir)
    features, labels = extract_features(model, getattr(splits, split), batch_size=batch_size)
    stats = feature_statistics(features, labels, model.fc)
    angles = torch.rad2deg(pair_angles(class_principal_angles(model.fc)))
    return {
        **stats,
        "subspace_dim": getattr(model.fc, "subspace_dim", 1),
        "principal_angles": angles.tolist(),
        "checkpoint": str(resolve_checkpoint(checkpoint)),
        "dataset": splits.name,
        "split": split,
        "epoch": int(payload["epoch"]),
    }
