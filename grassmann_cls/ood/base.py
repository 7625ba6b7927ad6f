"""The interface every post-hoc OOD score follows, and the registry of scores."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from manifolds import Registry

from ..errors import ConfigError, ManifoldTypeError, ShapeError
from ..head import GrassmannHead

__all__ = ["OODScore", "OOD_SCORES", "make_score"]

OOD_SCORES: Registry = Registry("OOD score")
"""Every post-hoc score by name; entries are :class:`OODScore` subclasses."""


def _register(cls: type[OODScore]) -> type[OODScore]:
    """Register ``cls`` in :data:`OOD_SCORES` under its ``name``."""
    return OOD_SCORES.register(cls, name=cls.name)


def _matrix(name: str, value, columns: int | None = None, symbol: str = "n") -> torch.Tensor:
    """``value`` if it is a real floating tensor of shape ``(B, columns)``, ``B >= 1``."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise ManifoldTypeError(f"{name} must be a real floating tensor; got {got}")
    if value.ndim != 2 or value.shape[0] == 0 or (columns is not None and value.shape[1] != columns):
        width = symbol if columns is None else f"{symbol}={columns}"
        raise ShapeError(f"{name} must have shape (B, {width}) with B >= 1; got {tuple(value.shape)}")
    return value


def _labels(value, rows: int) -> torch.Tensor:
    """``value`` if it is an integer tensor of shape ``(rows,)`` with non-negative entries."""
    if (
        not isinstance(value, torch.Tensor)
        or value.is_floating_point()
        or value.is_complex()
        or value.dtype == torch.bool
    ):
        got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise ManifoldTypeError(f"labels must be an integer tensor; got {got}")
    if value.shape != (rows,):
        raise ShapeError(f"labels must have shape ({rows},), one per training feature; got {tuple(value.shape)}")
    if bool((value < 0).any()):
        raise ShapeError(f"labels must be class indices >= 0; got minimum {int(value.min())}")
    return value


def head_shape(head: nn.Module) -> tuple[int | None, int | None]:
    """``(n, C)`` of a :class:`~grassmann_cls.GrassmannHead` or ``nn.Linear``; ``None`` where unknown."""
    if isinstance(head, GrassmannHead):
        return head.in_features, head.num_classes
    if isinstance(head, nn.Linear):
        return head.in_features, head.out_features
    return None, None


class OODScore:
    r"""A post-hoc out-of-distribution score: higher means more in-distribution.

    A score is computed from a batch of features and logits of a trained model
    (``score(features, logits)``, shape ``(B,)``). Scores that need training
    statistics or the classifier's parameters learn them once with
    :meth:`fit`; the others work without it. Every score declares the heads it
    applies to in :attr:`applies_to` and refuses the others.

    Subclasses set the class attributes below and implement ``_fit`` (where
    something is learned) and ``_score``; they are registered in
    :data:`OOD_SCORES` under :attr:`name`.

    Attributes
    ----------
    name : str
        The registered name (``"msp"``, ``"vim"``, ...).
    applies_to : tuple of type
        The head classes the score accepts (``nn.Module``: any head).
    needs_fit : bool
        Whether :meth:`fit` must be called before scoring.
    needs_features, needs_labels : bool
        Whether :meth:`fit` needs the training features / labels.

    Examples
    --------
    >>> import torch
    >>> from grassmann_cls.ood import OOD_SCORES
    >>> score = OOD_SCORES.resolve("energy")(temperature=1.0)
    >>> score(torch.zeros(2, 4), torch.zeros(2, 3)).shape
    torch.Size([2])
    """

    name: ClassVar[str] = ""
    applies_to: ClassVar[tuple[type, ...]] = (nn.Module,)
    needs_fit: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False

    def __init__(self) -> None:
        self._fitted = not self.needs_fit
        self._in_features: int | None = None
        self._num_classes: int | None = None

    @property
    def fitted(self) -> bool:
        """Whether the score can be computed (fitted, or needing no fit)."""
        return self._fitted

    def check_head(self, head: nn.Module) -> tuple[bool, str]:
        """``(True, "")`` if the score applies to ``head``, else ``(False, reason)``."""
        if isinstance(head, self.applies_to):
            return True, ""
        kinds = " or ".join(t.__name__ for t in self.applies_to)
        return False, f"the {self.name!r} OOD score applies to {kinds} heads; got {type(head).__name__}"

    def fit(
        self, head: nn.Module, features: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> OODScore:
        """Learn what the score needs from the head and the training data; returns ``self``.

        Parameters
        ----------
        head : nn.Module
            The trained classification head (checked against :attr:`applies_to`).
        features : torch.Tensor, optional
            Training features, shape ``(N, n)``; required where :attr:`needs_features`.
        labels : torch.Tensor, optional
            Training labels, integer, shape ``(N,)``; required where :attr:`needs_labels`.

        Raises
        ------
        ConfigError
            If the score does not apply to ``head`` or required data is missing.
        ShapeError, ManifoldTypeError
            If the data have the wrong shape or type.
        """
        ok, reason = self.check_head(head)
        if not ok:
            raise ConfigError(reason)
        for needed, what, value in ((self.needs_features, "features", features), (self.needs_labels, "labels", labels)):
            if needed and value is None:
                raise ConfigError(f"the {self.name!r} OOD score needs the training {what} to fit; got None")
        n, classes = head_shape(head)
        if features is not None:
            features = _matrix("features", features, n)
            n = features.shape[1]
        if labels is not None:
            if features is None:
                raise ConfigError(f"labels were given without features to fit the {self.name!r} OOD score")
            labels = _labels(labels, features.shape[0])
        with torch.no_grad():
            self._fit(head, features, labels)
        self._in_features, self._num_classes = n, classes
        self._fitted = True
        return self

    def _fit(self, head: nn.Module, features: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        """Learn the score's statistics (nothing by default)."""

    def __call__(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Scores of shape ``(B,)``, float64, higher meaning more in-distribution.

        Parameters
        ----------
        features : torch.Tensor
            Penultimate features, shape ``(B, n)``.
        logits : torch.Tensor
            The head's logits for those features, shape ``(B, C)``.
        """
        if not self._fitted:
            raise ConfigError(f"the {self.name!r} OOD score must be fitted first: call .fit(head, features, labels)")
        features = _matrix("features", features, self._in_features)
        logits = _matrix("logits", logits, self._num_classes, "C")
        if features.shape[0] != logits.shape[0]:
            raise ShapeError(
                f"features and logits must have the same batch size; got {features.shape[0]} and {logits.shape[0]}"
            )
        with torch.no_grad():
            return self._score(features, logits)

    def _score(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__}._score is not implemented")

    def _options(self) -> dict[str, object]:
        """The constructor options, shown in ``repr``."""
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._options().items())
        return f"{type(self).__name__}({options})"


def make_score(score: str | type[OODScore] | OODScore, **options) -> OODScore:
    """An :class:`OODScore` from a registered name, a subclass, or an instance.

    Parameters
    ----------
    score : str, OODScore subclass or OODScore
        A name of :data:`OOD_SCORES`, a class to instantiate with ``options``,
        or a ready score (then ``options`` must be empty).
    **options
        The score's constructor options (``temperature=``, ``dim=``, ...).

    Examples
    --------
    >>> make_score("energy", temperature=2.0)
    Energy(temperature=2.0)
    """
    if isinstance(score, OODScore):
        if options:
            raise ConfigError(f"options {sorted(options)} cannot be applied to the ready score {score!r}")
        return score
    if isinstance(score, type) and issubclass(score, OODScore):
        return score(**options)
    if not isinstance(score, str):
        raise ManifoldTypeError(f"score must be a name, an OODScore subclass or instance; got {type(score).__name__}")
    return OOD_SCORES.resolve(score)(**options)
