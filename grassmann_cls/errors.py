"""Error types raised by :mod:`grassmann_cls`.

The geometry's error types are re-exported from :mod:`manifolds.errors`, so
``from grassmann_cls.errors import ShapeError`` and
``from manifolds.errors import ShapeError`` are the same class. The
learning side adds errors about configurations, checkpoints and data. Every
error is a :class:`GrassmannError` and also the matching built-in exception
(``ValueError``, ``TypeError`` or ``FloatingPointError``).
"""

from __future__ import annotations

from manifolds.errors import (
    GrassmannError,
    ManifoldTypeError,
    NonFiniteError,
    NotOnManifoldError,
    OptionError,
    ShapeError,
)

__all__ = [
    "GrassmannError",
    "ShapeError",
    "OptionError",
    "ManifoldTypeError",
    "NotOnManifoldError",
    "NonFiniteError",
    "ConfigError",
    "CheckpointError",
    "DataError",
]


class ConfigError(GrassmannError, ValueError):
    """A training configuration or model structure cannot be used as given."""


class CheckpointError(GrassmannError, ValueError):
    """A checkpoint is missing, truncated, or does not match the model."""


class DataError(GrassmannError, ValueError):
    """A data set is missing, malformed, or does not match the model."""
