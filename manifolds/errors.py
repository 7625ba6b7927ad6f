"""Error types raised by :mod:`manifolds` (and re-used by :mod:`grassmann_cls`).

Every error the library raises on bad input is a subclass of
:class:`GrassmannError` *and* of the matching built-in (``ValueError`` or
``TypeError``), so ``except ValueError`` keeps working for callers that do not
know this library.
"""

from __future__ import annotations

__all__ = [
    "GrassmannError",
    "ShapeError",
    "OptionError",
    "ManifoldTypeError",
    "NotOnManifoldError",
    "NonFiniteError",
]


class GrassmannError(Exception):
    """Base class of every error this library raises on purpose."""


class ShapeError(GrassmannError, ValueError):
    """A tensor has the wrong shape, e.g. ``k > n`` or mismatched batch dims."""


class OptionError(GrassmannError, ValueError):
    """An option name or hyper-parameter value is not accepted."""


class ManifoldTypeError(GrassmannError, TypeError):
    """An argument has the wrong type, dtype or device."""


class NotOnManifoldError(GrassmannError, ValueError):
    """A tensor that should be an orthonormal basis is not one."""


class NonFiniteError(GrassmannError, FloatingPointError):
    """A NaN or Inf was met where the library refuses to propagate it."""
