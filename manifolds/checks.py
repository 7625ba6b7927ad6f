"""Argument checks shared by :mod:`manifolds` and :mod:`grassmann_cls` (boundaries only).

Every check raises a :mod:`manifolds.errors` type that states what was
expected and what was given. The checks read metadata (type, dtype, device,
shape) and cost no device synchronisation, except :func:`finite`, which reads
the values once. The registry entries and the :class:`~manifolds.Grassmann`
methods that optimizers call every step (``retr``, ``proju``, ``transp``, ...)
never call these: they are hot paths and trust their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import ManifoldTypeError, NonFiniteError, OptionError, ShapeError

__all__ = [
    "LAPACK_DTYPES",
    "orthonormality_tolerance",
    "integer",
    "real",
    "choice",
    "boolean",
    "keywords",
    "tensor",
    "basis",
    "pair",
    "finite",
    "dtype",
    "device",
    "generator",
]

LAPACK_DTYPES = (torch.float32, torch.float64)
"""The dtypes the geometry computes in (LAPACK has no half-precision kernels)."""


def orthonormality_tolerance(dtype: torch.dtype, n: int, *, factor: float = 100.0) -> float:
    """``factor * n * eps(dtype)``: how far ``x^T x`` may stray from ``I`` for an ``n``-row basis."""
    return factor * max(n, 1) * torch.finfo(dtype).eps


def integer(name: str, value, *, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (bools and floats refused), at least ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ManifoldTypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    try:
        value = int(value.__index__())
    except (TypeError, ValueError, RuntimeError):
        raise ManifoldTypeError(f"{name} must be an int; got {type(value).__name__} {value!r}") from None
    if minimum is not None and value < minimum:
        raise OptionError(f"{name} must be >= {minimum}; got {value}")
    return value


def real(
    name: str,
    value,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
    strict_max: bool = False,
) -> float:
    """``value`` as a finite ``float`` in the given range (bools and strings refused)."""
    if isinstance(value, (bool, str, bytes)) or not hasattr(value, "__float__"):
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
        raise OptionError(
            f"{where} got unknown keyword(s) {', '.join(unknown)}; expected some of {', '.join(accepted)}"
        )


def _dtype_names(dtypes) -> str:
    return " or ".join(str(d).removeprefix("torch.") for d in dtypes)


def tensor(name: str, t, *, dtypes=LAPACK_DTYPES) -> torch.Tensor:
    """``t`` if it is a tensor of one of ``dtypes``."""
    if not isinstance(t, torch.Tensor):
        raise ManifoldTypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        raise ManifoldTypeError(f"{name} must have dtype {_dtype_names(dtypes)}; got {t.dtype}")
    return t


def basis(name: str, t, *, dtypes=LAPACK_DTYPES) -> torch.Tensor:
    """``t`` if it is a tensor of shape ``(..., n, k)`` with ``1 <= k <= n``."""
    tensor(name, t, dtypes=dtypes)
    if t.dim() < 2:
        raise ShapeError(f"{name} must have shape (..., n, k); got {tuple(t.shape)}")
    n, k = t.shape[-2:]
    if not 1 <= k <= n:
        raise ShapeError(f"{name} must satisfy 1 <= k <= n; got k={k}, n={n} (shape {tuple(t.shape)})")
    return t


def pair(name_a: str, a, name_b: str, b, *, same_k: bool = True) -> torch.Size:
    """Check two bases of equal ``(n, k)`` (only ``n`` if not ``same_k``), dtype and device.

    Returns the broadcast batch shape.
    """
    basis(name_a, a)
    basis(name_b, b)
    if a.dtype != b.dtype or a.device != b.device:
        raise ManifoldTypeError(
            f"{name_a} and {name_b} must share dtype and device; got {a.dtype} on {a.device} "
            f"and {b.dtype} on {b.device}"
        )
    if (a.shape[-2:] if same_k else a.shape[-2]) != (b.shape[-2:] if same_k else b.shape[-2]):
        what = "(n, k)" if same_k else "n"
        raise ShapeError(f"{name_a} and {name_b} must have the same {what}; got {tuple(a.shape)} and {tuple(b.shape)}")
    try:
        return torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuntimeError:
        raise ShapeError(
            f"{name_a} and {name_b} must have broadcastable batch dims; got {tuple(a.shape)} and {tuple(b.shape)}"
        ) from None


def finite(**tensors: torch.Tensor) -> None:
    """Raise :class:`NonFiniteError` naming the first tensor that holds a NaN or Inf (one sync each)."""
    # Note [cheap finiteness check]
    # isfinite(t).all() materialises several full-size temporaries: on a
    # (1000, 2048, 8) stack it cost 5x the distance it guarded. aminmax is one
    # read-only pass that propagates NaN and exposes +-Inf; it is fast on
    # contiguous memory, so row-stored bases are read through their .mT view.
    for name, t in tensors.items():
        if t.numel() == 0 or not t.is_floating_point():
            continue
        if t.dim() >= 2 and not t.is_contiguous() and t.mT.is_contiguous():
            t = t.mT
        low, high = torch.aminmax(t) if t.is_contiguous() else (t.amin(), t.amax())
        if not bool(torch.isfinite(low) & torch.isfinite(high)):
            raise NonFiniteError(f"{name} holds NaN or Inf values; expected finite values")


def dtype(name: str, value, *, dtypes=LAPACK_DTYPES) -> torch.dtype:
    """``value`` (``None`` means the default dtype) if it is one of ``dtypes``."""
    value = torch.get_default_dtype() if value is None else value
    if not isinstance(value, torch.dtype) or value not in dtypes:
        raise ManifoldTypeError(f"{name} must be {_dtype_names(dtypes)}, a floating dtype; got {value!r}")
    return value


def device(name: str, value) -> torch.device:
    """``value`` (``None``: CPU) as a ``torch.device`` that exists on this machine."""
    if value is None:
        return torch.device("cpu")
    if not isinstance(value, (str, int, torch.device)) or isinstance(value, bool):
        raise ManifoldTypeError(f"{name} must be a torch.device or a string like 'cpu'; got {value!r}")
    try:
        value = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise ManifoldTypeError(f"{name} must name a device, e.g. 'cpu' or 'cuda:0'; got {value!r}") from None
    if value.type == "cuda" and (not torch.cuda.is_available() or (value.index or 0) >= torch.cuda.device_count()):
        raise ManifoldTypeError(f"{name} {str(value)!r} is not available on this machine")
    if value.type not in ("cpu", "cuda", "meta") and not _backend_available(value.type):
        raise ManifoldTypeError(f"{name} {str(value)!r} is not available on this machine")
    return value


def _backend_available(kind: str) -> bool:
    module = getattr(torch, kind, None)
    is_available = getattr(module, "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except Exception:  # noqa: BLE001 - a backend probe must never be the error the user sees
        return False


def generator(name: str, value, device: torch.device) -> torch.Generator | None:
    """``value`` if it is ``None`` or a ``torch.Generator`` on ``device``'s type."""
    if value is None:
        return None
    if not isinstance(value, torch.Generator):
        raise ManifoldTypeError(f"{name} must be a torch.Generator or None; got {type(value).__name__}")
    if value.device.type != device.type:
        raise ManifoldTypeError(f"{name} lives on {value.device.type} but the tensor is made on {device}")
    return value
