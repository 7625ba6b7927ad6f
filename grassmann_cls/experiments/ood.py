r"""Out-of-distribution detection of a trained model: every applicable score against every OOD set.

The protocol: features and logits of the in-distribution test split and of
each OOD set are computed batch by batch; every score of
:data:`~grassmann_cls.ood.OOD_SCORES` that applies to the model's head is
fitted on the training features and labels of the model's own (training)
data; :func:`~grassmann_cls.ood.ood_metrics` compares the in-distribution
test scores with each OOD set's. Scores that do not apply to the head are
skipped and listed with the reason.

OOD sets (the test split of each data set; images are standardised as the
data set's own training images):

================  ==================================================================
name              images
================  ==================================================================
``heldout``       the classes of the model's data set it was *not* trained on
                  (open set; only for a model trained with ``classes``)
``digits``        scikit-learn's digits, resized to the model's input as
                  :func:`~grassmann_cls.experiments.transfer.transfer_checkpoint` does
``noise``         both of ``gaussian_noise`` and ``uniform_noise``: as many images as
                  the in-distribution test split (at most 2000), with the per-channel mean and
                  standard deviation of the training images, seeded
a name or path    any data set :func:`~grassmann_cls.training.data.load_dataset` accepts,
                  resized and channel-repeated to the model's input like ``digits``
================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from grassmann_cls.errors import DataError
from grassmann_cls.ood import OOD_SCORES, make_score, ood_metrics
from grassmann_cls.training.backbones import Backbone, extract_features
from grassmann_cls.training.checkpoint import resolve_checkpoint
from grassmann_cls.training.data import DataSplits, ImageData, load_dataset, prepare, repeat_channels, resize_images
from grassmann_cls.training.runs import checkpoint_data, load_model

__all__ = ["SPECIAL_SETS", "OODEvaluation", "expand_names", "ood_sets", "evaluate_ood", "ood_checkpoint"]

SPECIAL_SETS = ("heldout", "digits", "noise", "gaussian_noise", "uniform_noise")
"""OOD set names with a meaning of their own; any other name is a data set or a path."""
NOISE_IMAGES = 2000
"""The most images of each noise set."""


@dataclasses.dataclass
class OODEvaluation:
    """What :func:`evaluate_ood` measures.

    Attributes
    ----------
    summary : dict
        JSON-friendly: ``id_top1`` (percent), ``num_id``, ``ood_sets``
        (name -> number of images), ``metrics`` (score -> OOD set ->
        ``auroc, aupr_in, aupr_out, fpr95``), ``skipped`` (score -> reason),
        ``head``, ``subspace_dim``.
    values : dict
        Score -> ``{"id": array, <OOD set>: array}`` of the scores themselves
        (float64 numpy arrays), for plots.
    """

    summary: dict[str, Any]
    values: dict[str, dict[str, np.ndarray]]


def expand_names(names: str | Sequence[str]) -> list[str]:
    """OOD set names from ``"a,b"`` or a list, ``noise`` expanded, duplicates dropped, order kept."""
    parts = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for part in (str(p).strip() for p in parts):
        for name in ("gaussian_noise", "uniform_noise") if part == "noise" else (part,):
            if name and name not in out:
                out.append(name)
    if not out:
        raise DataError("no OOD data set given; pass e.g. --ood-data heldout,digits,noise")
    return out


def _fit_to_model(data: DataSplits, in_shape: tuple[int, int, int]) -> DataSplits:
    """``data`` with grey images repeated to colour and resized to ``in_shape`` (as transfer does)."""
    if data.image_shape == tuple(in_shape):
        return data
    if not isinstance(data.train, TensorDataset):
        raise DataError(f"{data.name} has images {data.image_shape} read from disk; the model takes {tuple(in_shape)}")
    if data.image_shape[0] == 1 and in_shape[0] > 1:
        data = repeat_channels(data, in_shape[0])
    if data.image_shape[0] != in_shape[0]:
        raise DataError(f"{data.name} has {data.image_shape[0]} channels; the model takes {in_shape[0]}")
    return resize_images(data, tuple(in_shape[1:])) if data.image_shape != tuple(in_shape) else data


def _heldout(config: dict, in_shape, data_dir) -> TensorDataset:
    """The test images of the classes of the model's data set that it was not trained on."""
    classes = config.get("classes")
    full = load_dataset(config["dataset"], data_dir=data_dir or config.get("data_dir"))
    if not classes:
        raise DataError(
            f"heldout needs a model trained on some classes only (train --classes); this one was "
            f"trained on all {full.num_classes} classes of {full.name}"
        )
    others = [c for c in range(full.num_classes) if c not in set(classes)]
    if not others:
        raise DataError(f"heldout: the model was trained on every class of {full.name}; no class is left out")
    image_size = config.get("image_size")
    if image_size is not None and full.image_shape[1:] != (image_size, image_size):
        full = resize_images(full, image_size)
    test = full.test
    assert isinstance(test, TensorDataset), "load_dataset reads its data into memory"
    x, y = test.tensors
    keep = torch.isin(y, torch.tensor(others))
    return TensorDataset(_fit_images(x[keep], in_shape, full.name), y[keep])


def _fit_images(x: torch.Tensor, in_shape, name: str) -> torch.Tensor:
    if tuple(x.shape[1:]) != tuple(in_shape):
        raise DataError(f"{name} has images {tuple(x.shape[1:])}; the model takes {tuple(in_shape)}")
    return x


def _noise(kind: str, train: TensorDataset, count: int, in_shape, seed: int) -> TensorDataset:
    """``count`` noise images with the per-channel mean and std of the training images."""
    x = train.tensors[0]
    mean = x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1)
    std = x.std(dim=(0, 2, 3)).view(1, -1, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *in_shape)
    if kind == "gaussian_noise":
        unit = torch.randn(shape, generator=generator)
    else:  # uniform on [-sqrt(3), sqrt(3)]: mean 0, variance 1
        unit = (torch.rand(shape, generator=generator) * 2 - 1) * math.sqrt(3.0)
    return TensorDataset(mean + std * unit, torch.zeros(count, dtype=torch.int64))


def ood_sets(
    names: str | Sequence[str], config: dict, splits: DataSplits, in_shape, *, data_dir=None, seed: int = 0
) -> dict[str, ImageData]:
    """Load every OOD set (see the module table) for a model, checking all of them first.

    Parameters
    ----------
    names : str or sequence of str
        Comma-separated names, or a list.
    config : dict
        The model's training configuration (``TrainConfig.to_dict()``).
    splits : DataSplits
        The model's in-distribution data (for the noise statistics and size).
    in_shape : tuple of int
        ``(C, H, W)`` the model takes.
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    seed : int
        Seed of the noise images.

    Returns
    -------
    dict
        Name -> data set of ``(image, label)`` pairs (labels are not used).

    Raises
    ------
    DataError
        An unknown name or path, ``heldout`` for a model trained on all classes,
        or images that cannot be brought to ``in_shape``.
    """
    out: dict[str, ImageData] = {}
    for name in expand_names(names):
        if name == "heldout":
            out[name] = _heldout(config, in_shape, data_dir)
        elif name in ("gaussian_noise", "uniform_noise"):
            if not isinstance(splits.train, TensorDataset):
                raise DataError(f"{name}: noise statistics need in-memory training data; {splits.name} is on disk")
            out[name] = _noise(name, splits.train, min(len(splits.test), NOISE_IMAGES), in_shape, seed)
        else:
            out[name] = _fit_to_model(prepare(name, data_dir=data_dir or config.get("data_dir")), in_shape).test
    return out


def _features_and_logits(model: Backbone, data: ImageData, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
    features, labels = extract_features(model, data, batch_size=batch_size)
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = torch.cat([model.fc(chunk.to(device)).float().cpu() for chunk in features.split(batch_size)])
    return features, logits, labels


def _fitted_scores(head: nn.Module, features: torch.Tensor, labels: torch.Tensor, scores) -> tuple[dict, dict]:
    """Every applicable score fitted on the training features; the others with their reason."""
    fitted, skipped = {}, {}
    for name in scores:
        score = make_score(name)
        ok, reason = score.check_head(head)
        if not ok:
            skipped[name] = reason
            continue
        fitted[name] = score.fit(head, features, labels)
    return fitted, skipped


def evaluate_ood(
    model: Backbone,
    splits: DataSplits,
    sets: dict[str, ImageData],
    *,
    scores: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> OODEvaluation:
    """Every applicable OOD score of ``model`` against every OOD set.

    Parameters
    ----------
    model : Backbone
        A trained model with ``features`` and ``fc`` (the head), in any mode
        (features are taken in evaluation mode).
    splits : DataSplits
        In-distribution data: scores are fitted on ``splits.train`` and the
        in-distribution scores are those of ``splits.test``.
    sets : dict
        OOD set name -> data set of images (:func:`ood_sets`).
    scores : sequence of str, optional
        Names of :data:`~grassmann_cls.ood.OOD_SCORES`; default all.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    OODEvaluation
    """
    if not sets:
        raise DataError("no OOD data set given")
    names = list(scores) if scores is not None else OOD_SCORES.names()
    for name in names:
        OOD_SCORES.resolve(name)
    head = model.fc
    train_features, _, train_labels = _features_and_logits(model, splits.train, batch_size)
    fitted, skipped = _fitted_scores(head, train_features, train_labels, names)
    id_features, id_logits, id_labels = _features_and_logits(model, splits.test, batch_size)
    outputs = {name: _features_and_logits(model, data, batch_size)[:2] for name, data in sets.items()}
    values: dict[str, dict[str, np.ndarray]] = {}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for name, score in fitted.items():
        values[name] = {"id": score(id_features, id_logits).numpy()}
        values[name] |= {ood: score(f, logit).numpy() for ood, (f, logit) in outputs.items()}
        metrics[name] = {ood: ood_metrics(values[name]["id"], values[name][ood]) for ood in sets}
    top1 = 100.0 * float((id_logits.argmax(dim=1) == id_labels).double().mean())
    summary = {
        "id_top1": top1,
        "num_id": len(id_labels),
        "num_train": len(train_labels),
        "ood_sets": {name: len(data) for name, data in sets.items()},
        "metrics": metrics,
        "skipped": skipped,
        "head_type": type(head).__name__,
        "subspace_dim": int(getattr(head, "subspace_dim", 0) or 0),
    }
    return OODEvaluation(summary, values)


def ood_checkpoint(
    checkpoint: str | os.PathLike,
    ood_data: str | Sequence[str],
    *,
    data_dir: str | None = None,
    scores: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 1024,
) -> OODEvaluation:
    """:func:`evaluate_ood` of a saved run on the named OOD sets.

    Parameters
    ----------
    checkpoint : path-like
        A ``checkpoint.pt`` or the run folder holding it.
    ood_data : str or sequence of str
        OOD set names (module table), comma-separated or a list.
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    scores : sequence of str, optional
        Score names; default all of :data:`~grassmann_cls.ood.OOD_SCORES`.
    seed : int
        Seed of the noise images.
    device : str
        Where to run the model.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    OODEvaluation
        Its ``summary`` also holds ``checkpoint``, ``dataset`` and ``epoch``.
    """
    path = resolve_checkpoint(checkpoint)
    model, payload = load_model(path, device=device)
    splits = checkpoint_data(payload, data_dir=data_dir)
    sets = ood_sets(ood_data, payload["config"], splits, tuple(model.in_shape), data_dir=data_dir, seed=seed)
    result = evaluate_ood(model, splits, sets, scores=scores, batch_size=batch_size)
    result.summary = {
        "checkpoint": str(Path(path)),
        "dataset": splits.name,
        "epoch": int(payload["epoch"]),
        **result.summary,
    }
    return result
