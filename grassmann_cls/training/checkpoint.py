r"""Atomic checkpoint and JSON files, and validated loading.

Files are written atomically: a crash at any point leaves either the old file
or the new one, never a torn file (at worst a stray ``*.tmp`` sibling).

A checkpoint is a ``dict`` saved with :func:`torch.save`, holding only tensors
and plain Python values (so it loads with ``weights_only=True``):

===================  =========================================================
key                  value
===================  =========================================================
``format``           :data:`FORMAT`
``config``           the :class:`~grassmann_cls.training.train.TrainConfig` as a dict
``data``             ``name, num_classes, image_shape, class_names`` of the data
``epoch``            completed epochs
``step``             completed optimiser steps
``model``            ``model.state_dict()`` (plain tensors)
``optimizer``        ``optimizer.state_dict()``
``scheduler``        ``scheduler.state_dict()``
``rng``              ``torch`` (and ``cuda`` when available) and ``python`` RNG states
``history``          per-epoch metrics so far (list of dicts)
``epoch_step``       optional: steps done in epoch ``epoch`` (0 at an epoch's end)
``epoch_sums``       optional: each process's partial loss sum, hits, samples, ``(W, 3)``
``steps_per_epoch``  optional: steps per epoch of the run
``world_size``       optional: number of processes ``W`` that wrote it
``rng_ranks``        optional: every process's ``rng`` (when ``W > 1``)
``scaler``           optional: ``GradScaler.state_dict()`` (``fp16``), else ``None``
===================  =========================================================

The optional keys are written by :func:`~grassmann_cls.training.train.train`
for a checkpoint taken in the middle of an epoch, which resumes at the step it
was taken; a checkpoint without them resumes at its epoch boundary.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import uuid
from pathlib import Path
from typing import Any

import torch

from grassmann_cls.errors import CheckpointError

__all__ = [
    "FORMAT",
    "CHECKPOINT",
    "resolve_checkpoint",
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "write_json",
    "rng_state",
    "set_rng_state",
    "plain_state_dict",
    "check_manifold_parameters",
]

FORMAT = "grassmann-cls-checkpoint/1"
CHECKPOINT = "checkpoint.pt"
_REQUIRED = ("format", "config", "data", "epoch", "model")
# torch's weights-only unpickler names the class it refused ("Unsupported global: GLOBAL a.B" since
# torch 2.4, "Unsupported class a.B" before); damaged bytes give other messages.
_PICKLED_OBJECT = re.compile(r"Unsupported (?:global: GLOBAL|class) ([\w.]+)")


# Note [atomic writes]
# A file is written to a temporary sibling in the same folder (so that the
# rename stays on one file system), flushed and fsync'ed, then moved over the
# target with os.replace, which is atomic on POSIX and Windows; the folder is
# fsync'ed afterwards so that the rename itself survives a power cut. A crash
# at any point leaves either the old file or the new one, never a torn file;
# at worst a stray *.tmp sibling remains.
@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Open a temporary sibling of ``path`` for binary writing; move it over ``path`` on success.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_write(target) as f:
    ...     _ = f.write(b"hello")
    >>> target.read_bytes()
    b'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / file system
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically (see the module note)."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=_json_default, allow_nan=True)
    with atomic_write(path) as f:
        f.write((text + "\n").encode())


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def plain_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every tensor a plain ``torch.Tensor`` (no geoopt subclasses)."""
    return {key: value.detach().as_subclass(torch.Tensor) for key, value in module.state_dict().items()}


def rng_state() -> dict[str, Any]:
    """The RNG states training uses: torch CPU, CUDA (when available) and Python's ``random``."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Save ``payload`` (see the module table) atomically; returns the path."""
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint payload lacks {missing}")
    with atomic_write(path) as f:
        torch.save(payload, f)
    return Path(path)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file of ``path``: ``path`` itself, or the ``checkpoint.pt`` in a run folder.

    Parameters
    ----------
    path : path-like
        A ``checkpoint.pt`` or a run folder (the ``--output`` of a training run).

    Raises
    ------
    CheckpointError
        If ``path`` does not exist, or is a folder without ``checkpoint.pt``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> (run / "checkpoint.pt").touch()
    >>> resolve_checkpoint(run) == run / "checkpoint.pt"
    True
    """
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise CheckpointError(
                f"run folder {path} holds no {CHECKPOINT}; pass a folder written by "
                "`grassmann-cls train` or its checkpoint file"
            )
        return path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; pass a run folder or the {CHECKPOINT} written by `grassmann-cls train`"
        )
    return path


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint`.

    Only weights-only files load (``torch.load(..., weights_only=True)``): a
    file of pickled Python objects, such as ``torch.save(model)``, is refused,
    since unpickling it could run arbitrary code.

    Parameters
    ----------
    path : path-like
        A checkpoint file or a run folder holding ``checkpoint.pt``
        (:func:`resolve_checkpoint`).
    map_location : str or torch.device
        Where to put the tensors.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated or corrupt, holds pickled Python
        objects, or is not a checkpoint of this library.
    """
    path = resolve_checkpoint(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _PICKLED_OBJECT.search(str(err))
        if refused is None:
            raise _corrupt(path, err) from None
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects ({refused.group(1)}), not only "
            "weights: refused, since loading it could run arbitrary code; save "
            "model.state_dict() instead, or pass a checkpoint written by `grassmann-cls train`"
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged file can make the unpickler raise anything
        raise _corrupt(path, err) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a grassmann-cls checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it was not written by `grassmann-cls train`")
    return payload


def _corrupt(path: Path, err: Exception) -> CheckpointError:
    # Note [corrupt checkpoints]: torch.load reports damage as RuntimeError,
    # EOFError, UnpicklingError, KeyError (memo), ValueError, ... depending
    # on where the bytes are cut; all of them mean "this file is unusable".
    text = " ".join(str(err).split())
    reason = f"{type(err).__name__}: {text.split('. ')[0][:160]}" if text else type(err).__name__
    return CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}); use another one")


def check_manifold_parameters(
    model: torch.nn.Module, where: str, *, atol: float = 1e-3, reproject: bool = False
) -> None:
    """Raise :class:`CheckpointError` if a loaded parameter is non-finite or off its manifold.

    Catches edited or damaged weights (NaN/Inf anywhere, or bases with
    ``S^T S != I``) right after ``load_state_dict``; ``atol`` is loose enough
    for float32 drift. With ``reproject=True`` finite bases that are off
    their manifold are replaced by their sign-fixed QR factor
    (``manifold.projx``) and a ``RuntimeWarning`` names them instead; the
    caller asked for that explicitly, since it changes the model.
    """
    import warnings

    import geoopt

    for name, p in model.named_parameters():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise CheckpointError(f"{where}: parameter {name} holds NaN or Inf values; the file is damaged")
        if isinstance(p, geoopt.ManifoldParameter) and not isinstance(p.manifold, geoopt.Euclidean):
            ok, reason = p.manifold.check_point_on_manifold(p.detach(), explain=True, atol=atol, rtol=atol)
            if ok:
                continue
            if not reproject:
                raise CheckpointError(
                    f"{where}: parameter {name} is not on its manifold ({reason}); "
                    "pass reproject=True (--reproject) to re-orthonormalise it"
                )
            with torch.no_grad():
                p.copy_(p.manifold.projx(p.detach()))
            warnings.warn(
                f"{where}: parameter {name} was not on its manifold ({reason}); "
                "re-projected it by QR as asked (reproject=True)",
                RuntimeWarning,
                stacklevel=2,
            )
