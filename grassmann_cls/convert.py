"""Turn an existing classifier into a GCR model by swapping its last ``nn.Linear``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from manifolds import checks as _checks

from .errors import ConfigError, ManifoldTypeError, OptionError
from .head import HEAD_OPTIONS, GrassmannHead

__all__ = ["convert", "find_classifier"]

_INITS = ("random", "linear")


def find_classifier(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The dotted name and module of ``model``'s classifier.

    Without ``name`` it is the last ``nn.Linear`` in registration order
    (``model.named_modules()``), which is the classifier of torchvision's
    ResNets, timm's ViTs and most models that define the head last.

    Raises
    ------
    ConfigError
        If the model has no ``nn.Linear``.
    OptionError
        If ``name`` is not the name of one of the model's ``nn.Linear`` modules
        (the message lists them).
    """
    if not isinstance(model, nn.Module):
        raise ManifoldTypeError(f"model must be an nn.Module; got {type(model).__name__}")
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(model).__name__} has no nn.Linear classifier to replace")
    if name is None:
        return linears[-1]
    for candidate, module in linears:
        if candidate == name:
            return candidate, module
    raise OptionError(
        f"no nn.Linear called {name!r} in {type(model).__name__}; "
        f"expected one of {', '.join(repr(n) for n, _ in linears)}"
    )


def convert(
    model: nn.Module,
    subspace_dim: int | Sequence[int],
    *,
    name: str | None = None,
    init: str = "random",
    **head_kwargs,
) -> nn.Module:
    """Replace the model's final ``nn.Linear(n, C)`` with a ``GrassmannHead(n, C, subspace_dim)``.

    The head gets the linear layer's device and dtype. The model is changed in
    place and returned (a bare ``nn.Linear`` model is returned as the new head).

    Parameters
    ----------
    model : nn.Module
        Any module tree ending in an ``nn.Linear`` classifier (features
        ``(B, n)`` -> logits ``(B, C)``).
    subspace_dim : int or sequence of int
        ``k``, or one ``k_c`` per class.
    name : str, optional
        Dotted name of the layer to replace (e.g. ``"fc"``, ``"head"``,
        ``"classifier.1"``); by default the last ``nn.Linear``
        (see :func:`find_classifier`).
    init : {"random", "linear"}
        Uniform random bases, or :meth:`GrassmannHead.from_linear` (each class
        vector becomes the first basis direction).
    **head_kwargs
        Passed to :class:`GrassmannHead` (``scale``, ``logit``, ``manifold``,
        ``generator``, ...).

    Returns
    -------
    nn.Module
        ``model``, now with the head.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    >>> model = convert(model, 4)
    >>> type(model[2]).__name__, model(torch.randn(2, 8)).shape
    ('GrassmannHead', torch.Size([2, 5]))
    """
    _checks.choice("init", init, _INITS)
    _checks.keywords("convert", head_kwargs, HEAD_OPTIONS)
    path, linear = find_classifier(model, name)
    weight = linear.weight
    head_kwargs.setdefault("dtype", weight.dtype)
    head_kwargs.setdefault("device", weight.device)
    if init == "linear":
        head = GrassmannHead.from_linear(linear, subspace_dim, **head_kwargs)
    else:
        head = GrassmannHead(linear.in_features, linear.out_features, subspace_dim, **head_kwargs)
    if path == "":
        return head
    parent_name, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_name), child, head)
    return model
