r"""Feature extractors with a replaceable final classifier.

Every backbone is a :class:`Backbone`: ``features(x)`` maps images of shape
``(B, C, H, W)`` to features of shape ``(B, n)`` (``n = feature_dim``) and
``fc`` is the final classifier, an ``nn.Linear(n, num_classes)`` to start
with. ``forward(x) = fc(features(x))``, so replacing ``fc`` by a
:class:`~grassmann_cls.head.GrassmannHead` (what ``convert()`` does) turns
the network into a GCR network.

=============================  =============================================  =========================
name                           architecture                                   ``feature_dim``
=============================  =============================================  =========================
``mlp``                        2 x (Linear, BatchNorm, ReLU)                  ``width`` (256)
``cnn``                        5 conv-BN-ReLU, 2 max-pools, global avg pool   ``4 * width`` (4 * 32)
``resnet``                     3 stages of basic blocks, global avg pool      ``4 * width`` (4 * 16)
``torchvision:<model>``        any torchvision classifier (if installed)      its last ``Linear``'s input
``timm:<model>``               any timm model (if installed)                  ``model.num_features``
=============================  =============================================  =========================

All plain backbones work for any image size, e.g. 28 x 28 (Fashion-MNIST)
and 8 x 8 (digits). torchvision and timm are optional: they are imported only
when such a name is asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import overload

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from grassmann_cls.errors import ConfigError, DataError, ManifoldTypeError, ShapeError
from grassmann_cls.training.data.splits import ImageData
from manifolds import Registry
from manifolds import checks as _checks

__all__ = [
    "BACKBONES",
    "Backbone",
    "MLP",
    "SmallCNN",
    "SmallResNet",
    "build_backbone",
    "backbone_names",
    "extract_features",
    "mlp",
    "cnn",
    "resnet",
]

BACKBONES: Registry = Registry("backbone")
_EXTERNAL = ("torchvision", "timm")


class Backbone(nn.Module):
    """Base class: ``forward(x) = fc(features(x))``.

    Attributes
    ----------
    in_shape : (int, int, int)
        ``(C, H, W)`` of the images the backbone was built for.
    feature_dim : int
        ``n``, the width of ``features(x)``.
    fc : nn.Module
        The final classifier, mapping ``(B, n)`` to logits ``(B, C)``.
    """

    in_shape: tuple[int, int, int]
    feature_dim: int
    fc: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of shape ``(B, n)`` of images ``x`` of shape ``(B, C, H, W)``."""
        raise NotImplementedError(f"{type(self).__name__}.features is not implemented")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(B, num_classes)`` of images ``x`` of shape ``(B, C, H, W)``."""
        return self.fc(self.features(x))


def _check_sizes(in_shape, num_classes: int, width: int) -> tuple[int, int, int]:
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ConfigError(f"in_shape must be (C, H, W) with positive sizes; got {in_shape}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2; got {num_classes}")
    if width < 1:
        raise ConfigError(f"width must be >= 1; got {width}")
    return in_shape


class MLP(Backbone):
    """Multi-layer perceptron on flattened images.

    Parameters
    ----------
    in_shape : (int, int, int)
        ``(C, H, W)`` of the input images.
    num_classes : int
        Outputs of ``fc``.
    width : int
        Width of every hidden layer, and ``feature_dim``.
    depth : int
        Number of (Linear, BatchNorm1d, ReLU) layers.
    """

    def __init__(self, in_shape, num_classes: int, width: int = 256, depth: int = 2):
        super().__init__()
        self.in_shape = _check_sizes(in_shape, num_classes, width)
        channels, height, width_px = self.in_shape
        if depth < 1:
            raise ConfigError(f"depth must be >= 1; got {depth}")
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = channels * height * width_px
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.fc = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _conv_bn(c_in: int, c_out: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class SmallCNN(Backbone):
    """A VGG-style CNN: widths ``w, w | 2w, 2w | 4w`` with 2 x 2 max-pools between.

    Parameters
    ----------
    in_shape : (int, int, int)
        ``(C, H, W)`` of the input images (any ``H, W >= 1``).
    num_classes : int
        Outputs of ``fc``.
    width : int
        Channels ``w`` of the first stage; ``feature_dim = 4 w``.
    """

    def __init__(self, in_shape, num_classes: int, width: int = 32):
        super().__init__()
        self.in_shape = _check_sizes(in_shape, num_classes, width)
        channels = self.in_shape[0]
        w = width
        self.body = nn.Sequential(
            _conv_bn(channels, w),
            _conv_bn(w, w),
            nn.MaxPool2d(2, ceil_mode=True),
            _conv_bn(w, 2 * w),
            _conv_bn(2 * w, 2 * w),
            nn.MaxPool2d(2, ceil_mode=True),
            _conv_bn(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = 4 * w
        self.fc = nn.Linear(4 * w, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3 x 3 conv-BN, identity or 1 x 1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.residual = nn.Sequential(_conv_bn(c_in, c_out, stride), _conv_bn(c_out, c_out, relu=False))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


class SmallResNet(Backbone):
    """A CIFAR-style ResNet: stem, three stages of widths ``w, 2w, 4w`` (strides 1, 2, 2).

    Parameters
    ----------
    in_shape : (int, int, int)
        ``(C, H, W)`` of the input images.
    num_classes : int
        Outputs of ``fc``.
    width : int
        Channels ``w`` of the first stage; ``feature_dim = 4 w``.
    blocks : int
        Basic blocks per stage (``blocks=1`` is an 8-layer ResNet).
    """

    def __init__(self, in_shape, num_classes: int, width: int = 16, blocks: int = 1):
        super().__init__()
        self.in_shape = _check_sizes(in_shape, num_classes, width)
        channels = self.in_shape[0]
        if blocks < 1:
            raise ConfigError(f"blocks must be >= 1; got {blocks}")
        layers: list[nn.Module] = [_conv_bn(channels, width)]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                layers.append(BasicBlock(c_in, c_out, 2 if stage and not block else 1))
                c_in = c_out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = c_in
        self.fc = nn.Linear(c_in, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@BACKBONES.register
def mlp(in_shape, num_classes: int, width: int | None = None) -> Backbone:
    """:class:`MLP` with two hidden layers of ``width`` (default 256)."""
    return MLP(in_shape, num_classes, width=width or 256)


@BACKBONES.register
def cnn(in_shape, num_classes: int, width: int | None = None) -> Backbone:
    """:class:`SmallCNN` with first-stage ``width`` (default 32)."""
    return SmallCNN(in_shape, num_classes, width=width or 32)


@BACKBONES.register
def resnet(in_shape, num_classes: int, width: int | None = None) -> Backbone:
    """:class:`SmallResNet` with first-stage ``width`` (default 16), one block per stage."""
    return SmallResNet(in_shape, num_classes, width=width or 16)


class ExternalBackbone(Backbone):
    """A torchvision or timm model cut before its classifier.

    Parameters
    ----------
    body : nn.Module
        Maps ``(B, C', H, W)`` images to ``(B, n)`` features.
    feature_dim : int
        ``n``.
    num_classes : int
        Outputs of the new ``fc``.
    in_shape : (int, int, int)
        ``(C, H, W)`` of the data.
    body_channels : int
        Channels ``body`` expects; a grayscale input (``C = 1``) is repeated
        to 3 channels when the body expects 3.
    """

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, in_shape, body_channels: int):
        super().__init__()
        self.in_shape = _check_sizes(in_shape, num_classes, 1)
        in_channels = self.in_shape[0]
        if in_channels != body_channels and not (in_channels == 1 and body_channels == 3):
            raise ConfigError(f"the model expects {body_channels} input channels; the data have {in_channels}")
        self.body = body
        self.repeat = body_channels if in_channels != body_channels else 1
        self.feature_dim = int(feature_dim)
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat > 1:
            x = x.expand(-1, self.repeat, -1, -1)
        return self.body(x).flatten(1)


def _import_optional(package: str):
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"backbone '{package}:...' needs {package}, which is not installed; "
            f"`pip install {package}` or use one of {', '.join(BACKBONES.names())}"
        )
    return importlib.import_module(package)


def _torchvision(model_name: str, in_shape, num_classes: int) -> Backbone:
    models = _import_optional("torchvision").models
    if model_name not in models.list_models():
        raise ConfigError(f"unknown torchvision model {model_name!r}; see torchvision.models.list_models()")
    model = models.get_model(model_name, weights=None)
    name, last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    setattr(parent, name.rpartition(".")[2], nn.Identity())
    return ExternalBackbone(model, last.in_features, num_classes, in_shape, 3)


def _timm(model_name: str, in_shape, num_classes: int) -> Backbone:
    timm = _import_optional("timm")
    if model_name not in timm.list_models():
        raise ConfigError(f"unknown timm model {model_name!r}; see timm.list_models()")
    model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_shape[0])
    return ExternalBackbone(model, model.num_features, num_classes, in_shape, in_shape[0])


def backbone_names() -> tuple[str, ...]:
    """Plain backbone names plus ``"torchvision:<model>"`` / ``"timm:<model>"`` when installed."""
    external = tuple(f"{p}:<model>" for p in _EXTERNAL if importlib.util.find_spec(p) is not None)
    return BACKBONES.names() + external


def build_backbone(
    name: str | Callable[..., Backbone], *, in_shape, num_classes: int, width: int | None = None
) -> Backbone:
    """Build a backbone by name (see the module table) or from a builder callable.

    Parameters
    ----------
    name : str or callable
        A :data:`BACKBONES` name, ``"torchvision:<model>"``, ``"timm:<model>"``,
        or a function ``(in_shape, num_classes, width) -> Backbone``.
    in_shape : (int, int, int)
        ``(C, H, W)`` of the input images.
    num_classes : int
        Outputs of ``fc``.
    width : int, optional
        Width knob of the plain backbones (ignored by external models).

    Returns
    -------
    Backbone
        With ``features(x) -> (B, feature_dim)`` and a final ``fc``.
    """
    if isinstance(name, str) and ":" in name:
        package, _, model_name = name.partition(":")
        if package not in _EXTERNAL:
            raise ConfigError(f"unknown backbone {name!r}; expected one of {', '.join(backbone_names())}")
        in_shape = _check_sizes(in_shape, num_classes, 1)
        return (_torchvision if package == "torchvision" else _timm)(model_name, tuple(in_shape), num_classes)
    if width is not None and width < 1:
        raise ConfigError(f"width must be >= 1; got {width}")
    return BACKBONES.resolve(name)(in_shape, num_classes, width)


@overload
def extract_features(model: Backbone, images: torch.Tensor, *, batch_size: int = 1024) -> tuple[torch.Tensor, None]: ...


@overload
def extract_features(
    model: Backbone, images: ImageData, *, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]: ...


@torch.no_grad()
def extract_features(
    model: Backbone, images: torch.Tensor | ImageData, *, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features of a data set in evaluation mode, batch by batch.

    Parameters
    ----------
    model : Backbone
        Any module with a ``features`` method; its training mode is restored.
    images : torch.Tensor, TensorDataset or Dataset
        Images of shape ``(N, C, H, W)``, a data set of ``(images, labels)``,
        or any map-style data set of ``(image, label)`` pairs (e.g. images
        read from disk, :class:`~grassmann_cls.training.data.imagefolder.FolderImages`).
    batch_size : int
        Images per forward pass.

    Returns
    -------
    features : torch.Tensor
        Shape ``(N, n)``, float32, on the CPU.
    labels : torch.Tensor or None
        Shape ``(N,)`` when ``images`` was a data set, else ``None``.

    Raises
    ------
    ManifoldTypeError
        If ``model`` has no ``features`` method, ``images`` is not a floating
        tensor or data set of them, or ``batch_size`` is not an int.
    OptionError
        If ``batch_size < 1``.
    ShapeError
        If ``images`` is not ``(N, C, H, W)`` with ``(C, H, W)`` equal to
        ``model.in_shape`` (when the model has one).
    DataError
        If there are no images.
    """
    if not callable(getattr(model, "features", None)) or not isinstance(model, nn.Module):
        raise ManifoldTypeError(f"model must be a module with a features method; got {type(model).__name__}")
    batch_size = _checks.integer("batch_size", batch_size, minimum=1)
    labels = None
    if isinstance(images, Dataset) and not isinstance(images, TensorDataset):
        return _dataset_features(model, images, batch_size)
    x = images
    if isinstance(images, TensorDataset):
        x, labels = images.tensors[0], images.tensors[1]
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ManifoldTypeError(
            f"images must be a floating tensor (N, C, H, W) or a TensorDataset of one; "
            f"got {getattr(x, 'dtype', type(x).__name__)}"
        )
    expected = getattr(model, "in_shape", None)
    if x.dim() != 4 or (expected is not None and tuple(x.shape[1:]) != tuple(expected)):
        wanted = "(N, C, H, W)" if expected is None else f"(N, {', '.join(str(s) for s in expected)})"
        raise ShapeError(f"images must have shape {wanted}; got {tuple(x.shape)}")
    if not len(x):
        raise DataError("cannot extract features of an empty set of images; got N=0")
    return _features(model, (batch for (batch,) in _batches(x, batch_size))), labels


def _features(model: Backbone, batches) -> torch.Tensor:
    """``model.features`` of every image batch, in evaluation mode, on the CPU, concatenated."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.features(batch.to(device)).float().cpu() for batch in batches])
    finally:
        model.train(was_training)


def _dataset_features(model: Backbone, data: ImageData, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`extract_features` of a map-style data set of ``(image, label)`` pairs, in order."""
    if not len(data):
        raise DataError("cannot extract features of an empty set of images; got N=0")
    expected = getattr(model, "in_shape", None)
    labels = []

    def images():
        for batch in DataLoader(data, batch_size=batch_size, shuffle=False):
            if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                raise ManifoldTypeError("a data set passed as images must yield (image, label) pairs")
            x, y = batch
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                got = getattr(x, "dtype", type(x).__name__)
                raise ManifoldTypeError(f"the data set's images must be floating tensors; got {got}")
            if x.dim() != 4 or (expected is not None and tuple(x.shape[1:]) != tuple(expected)):
                wanted = "(C, H, W)" if expected is None else f"({', '.join(str(s) for s in expected)})"
                raise ShapeError(f"the data set's images must have shape {wanted}; got {tuple(x.shape[1:])}")
            labels.append(torch.as_tensor(y, dtype=torch.int64))
            yield x

    features = _features(model, images())
    return features, torch.cat(labels)


def _batches(images: torch.Tensor, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(images), batch_size=batch_size, shuffle=False)
