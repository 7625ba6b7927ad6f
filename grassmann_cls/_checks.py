"""Argument checks shared by the public constructors (boundaries only, never hot loops)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from manifolds._checks import device, dtype, finite, generator, tensor

from .errors import ManifoldTypeError, OptionError

__all__ = ["integer", "real", "choice", "boolean", "keywords", "tensor", "finite", "dtype", "device", "generator"]


def integer(name: str, value, *, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (bools refused), at least ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ManifoldTypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise OptionError(f"{name} must be >= {minimum}; got {value}")
    return value


def real(name: str, value, *, minimum: float | None = None, strict: bool = False,
         maximum: float | None = None, strict_max: bool = False) -> float:
    """``value`` as a finite ``float`` in the given range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ManifoldTypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ManifoldTypeError(f"{name} must be a real number; got {value!r}") from err
    if not math.isfinite(value):
        raise OptionError(f"{name} must be finite; got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise OptionError(f"{name} must be {'>' if strict else '>='} {minimum}; got {value}")
    if maximum is not None and (value > maximum or (strict_max and value == maximum)):
        raise OptionError(f"{name} must be {'<' if strict_max else '<='} {maximum}; got {value}")
    return value


def choice(name: str, value, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise OptionError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def boolean(name: str, value) -> bool:
    """``value`` if it is a ``bool`` (``"False"``, ``0`` or ``None`` are refused, not guessed)."""
    if not isinstance(value, bool):
        raise ManifoldTypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return value


def keywords(where: str, given, accepted: Sequence[str]) -> None:
    """Refuse keyword names not in ``accepted`` (a typo is an error, not a silent default)."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise OptionError(f"{where} got unknown keyword(s) {', '.join(unknown)}; expected some of {', '.join(accepted)}")
