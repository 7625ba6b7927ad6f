r"""Linear transfer: a linear classifier on frozen, standardised features.

The protocol of the paper (and of Kornblith et al. 2021): the network is
frozen, penultimate features (``model.features(x)``, before the head) of a
*different* data set are extracted, standardised with the mean and standard
deviation of its training split, and a linear classifier is fitted on them.
Test accuracy (percent) measures how transferable the features are.

============  =====================================================
probe         scikit-learn estimator
============  =====================================================
``logistic``  ``LogisticRegression(C=regularization, max_iter=2000)``
``svm``       ``LinearSVC(C=regularization)`` (the paper's choice)
============  =====================================================
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable

import torch
from torch.utils.data import TensorDataset

from grassmann_cls.errors import ConfigError, ShapeError
from grassmann_cls.training.backbones import Backbone, extract_features
from grassmann_cls.training.checkpoint import resolve_checkpoint
from grassmann_cls.training.data import DataSplits, prepare, repeat_channels, resize_images
from grassmann_cls.training.runs import load_model
from manifolds import Registry

__all__ = ["PROBES", "ProbeResult", "linear_probe", "transfer", "transfer_checkpoint", "logistic", "svm"]

PROBES: Registry = Registry("probe")


@PROBES.register
def logistic(regularization: float, seed: int):
    """Multinomial logistic regression (L-BFGS)."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=regularization, max_iter=2000, random_state=seed)


@PROBES.register
def svm(regularization: float, seed: int):
    """Linear support-vector machine (one-vs-rest, squared hinge)."""
    from sklearn.svm import LinearSVC

    return LinearSVC(C=regularization, max_iter=5000, random_state=seed)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """Outcome of a linear probe.

    Attributes
    ----------
    accuracy : float
        Test accuracy in percent.
    train_accuracy : float
        Training accuracy in percent.
    probe : str
        The probe's registered name.
    num_train, num_test, feature_dim : int
        Sizes of the problem.
    """

    accuracy: float
    train_accuracy: float
    probe: str
    num_train: int
    num_test: int
    feature_dim: int


def _check_pair(features: torch.Tensor, labels: torch.Tensor, split: str) -> None:
    if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels) or not len(labels):
        raise ShapeError(
            f"{split} features must be (N, n) and labels (N,) with N >= 1; "
            f"got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if not torch.isfinite(features).all():
        raise ShapeError(f"{split} features hold NaN or Inf")


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    probe: str | Callable = "logistic",
    regularization: float = 1.0,
    seed: int = 0,
) -> ProbeResult:
    """Fit a linear classifier on standardised features and score it.

    Parameters
    ----------
    train_features, test_features : torch.Tensor
        Shapes ``(N_train, n)`` and ``(N_test, n)``.
    train_labels, test_labels : torch.Tensor
        Integer labels of shapes ``(N_train,)`` and ``(N_test,)``.
    probe : str or callable
        A :data:`PROBES` name or a function ``(regularization, seed) -> estimator``.
    regularization : float
        Inverse regularisation strength ``C`` (> 0).
    seed : int
        Seed of the estimator.

    Returns
    -------
    ProbeResult
    """
    _check_pair(train_features, train_labels, "train")
    _check_pair(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ShapeError(
            f"train and test features differ in width: {train_features.shape[1]} vs {test_features.shape[1]}"
        )
    if not regularization > 0:
        raise ConfigError(f"regularization must be > 0; got {regularization}")
    if len(torch.unique(train_labels)) < 2:
        raise ConfigError("the probe's training labels must hold at least 2 classes")
    make = PROBES.resolve(probe)
    mean = train_features.double().mean(0)
    std = train_features.double().std(0).clamp_min(1e-8)
    x_train = ((train_features.double() - mean) / std).numpy()
    x_test = ((test_features.double() - mean) / std).numpy()
    estimator = make(regularization, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: the score says enough
        estimator.fit(x_train, train_labels.numpy())
    return ProbeResult(
        accuracy=100.0 * float(estimator.score(x_test, test_labels.numpy())),
        train_accuracy=100.0 * float(estimator.score(x_train, train_labels.numpy())),
        probe=PROBES.name_of(make),
        num_train=len(train_labels),
        num_test=len(test_labels),
        feature_dim=train_features.shape[1],
    )


def transfer(
    model: Backbone,
    target: DataSplits,
    *,
    probe: str | Callable = "logistic",
    regularization: float = 1.0,
    seed: int = 0,
    batch_size: int = 1024,
) -> ProbeResult:
    """Linear probe of a frozen model's features on another data set.

    Parameters
    ----------
    model : Backbone
        Any module with ``features(x) -> (B, n)``; it is not changed.
    target : DataSplits
        The transfer data set; its images must have the shape the model was
        built for (e.g. digits resized to 28 x 28 for a Fashion-MNIST model,
        see :func:`~grassmann_cls.training.data.resize_images`).
    probe, regularization, seed
        As in :func:`linear_probe`.
    batch_size : int
        Images per forward pass when extracting features.

    Returns
    -------
    ProbeResult
    """
    expected = getattr(model, "in_shape", None)
    if expected is not None and tuple(expected) != tuple(target.image_shape):
        raise ConfigError(
            f"the model takes images of shape {tuple(expected)} but {target.name} has {target.image_shape}; "
            "resize the target (e.g. grassmann_cls.training.data.resize_images)"
        )
    train_features, train_labels = extract_features(model, target.train, batch_size=batch_size)
    test_features, test_labels = extract_features(model, target.test, batch_size=batch_size)
    return linear_probe(
        train_features,
        train_labels,
        test_features,
        test_labels,
        probe=probe,
        regularization=regularization,
        seed=seed,
    )


def transfer_checkpoint(
    checkpoint,
    target: str,
    *,
    data_dir: str | None = None,
    classes=None,
    probe: str | Callable = "logistic",
    regularization: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Linear probe of a saved model on another data set, resized to the model's input if needed.

    Parameters
    ----------
    checkpoint : path-like
        A ``checkpoint.pt`` written by training, or its run folder.
    target : str
        Data set name or path (see :func:`~grassmann_cls.training.data.load_dataset`).
    data_dir : str, optional
        Folder of the Fashion-MNIST files.
    classes : sequence of int, optional
        Use only these classes of the target.
    probe, regularization, seed
        As in :func:`linear_probe`.
    device : str
        Where to extract features.

    Returns
    -------
    dict
        The :class:`ProbeResult` fields plus ``checkpoint``, ``target`` and
        ``resized`` (whether the target images were resized, or grey images
        repeated to the model's colour channels).

    Warns
    -----
    UserWarning
        When the target holds classes of the data set the model was trained
        on: the probe then measures fit, not transfer.
    """

    model, payload = load_model(checkpoint, device=device)
    data = prepare(target, data_dir=data_dir, classes=classes)
    if _probes_training_data(payload, data, classes):
        warnings.warn(
            f"the probe data set {data.name} holds the data the model was trained on "
            f"({payload['data']['name']}), so the probe measures fit, not transfer; choose another "
            "target or classes the model was not trained on",
            UserWarning,
            stacklevel=2,
        )
    expected = tuple(model.in_shape)
    resized = False
    if data.image_shape[0] == 1 and expected[0] > 1 and isinstance(data.train, TensorDataset):
        data, resized = repeat_channels(data, expected[0]), True  # grey target, colour model
    if data.image_shape != expected and data.image_shape[0] == expected[0] and isinstance(data.train, TensorDataset):
        data, resized = resize_images(data, expected[1:]), True
    result = transfer(model, data, probe=probe, regularization=regularization, seed=seed)
    return {
        **dataclasses.asdict(result),
        "checkpoint": str(resolve_checkpoint(checkpoint)),
        "target": data.name,
        "resized": resized,
    }


def _probes_training_data(payload: dict, target: DataSplits, classes) -> bool:
    """Whether ``target`` (with ``classes``) shares classes with the data the checkpoint was trained on."""
    trained = payload["data"]
    root = re.compile(r"\[|-LT")  # selections decorate a name: "digits[0,1,2]", "digits-LT10"
    if root.split(trained["name"])[0] != root.split(target.name)[0] or trained.get("source") != target.source:
        return False
    trained_classes = payload["config"].get("classes")
    return trained_classes is None or classes is None or bool(set(trained_classes) & set(classes))
