r"""Measurements of a trained GCR model and of the geometry it was trained with.

===============================  ==================================================
function                         measures
===============================  ==================================================
:func:`orthonormality_drift`     :math:`\max_c \|S_c^T S_c - I\|_F` of the bases
:func:`time_optimizer_step`      wall time of one optimizer step
:func:`agreement_with_exp`       order of agreement of a retraction with
                                 :math:`\exp` (bases and subspaces)
:func:`agreement_with_parallel`  order of agreement of a vector transport with
                                 parallel transport
===============================  ==================================================

The orders are the diagnostic of pymanopt's ``check_retraction`` and Manopt's
``checkretraction``: an error that behaves like :math:`t^{p+1}` for small
steps ``t`` has log-log slope ``p + 1`` and means agreement to order ``p``.
They are measured in float64 at the :data:`STEPS`, small enough for the
leading Taylor term to dominate and large enough for third-order errors to
stay far above rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from grassmann_cls.training.recipe import OPTIMIZERS, build_bases_optimizer
from manifolds import RETRACTIONS, TRANSPORTS, Grassmann, expmap

__all__ = ["STEPS", "orthonormality_drift", "time_optimizer_step", "agreement_with_exp", "agreement_with_parallel"]

STEPS = tuple(float(t) for t in np.geomspace(1e-3, 1e-1, 7))
"""Step sizes ``t`` of the order measurements."""
_EXACT = 1e-12  # errors below this at every t: the map is exact
_WARMUP = 3


def orthonormality_drift(bases: torch.Tensor) -> float:
    r"""Largest :math:`\|S_c^T S_c - I\|_F` over the classes, computed in float64.

    Parameters
    ----------
    bases : torch.Tensor
        Shape ``(C, n, k)`` (any float dtype).
    """
    b = bases.detach().to(torch.float64)
    eye = torch.eye(b.shape[-1], dtype=torch.float64, device=b.device)
    return float(torch.linalg.matrix_norm(b.mT @ b - eye).amax())


def _step_ms(step: Callable[[], Any], repeats: int, device: torch.device) -> tuple[float, float]:
    """Fastest and median milliseconds of ``repeats`` calls of ``step``, after untimed warm-up calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(repeats + _WARMUP):
        sync()
        began = time.perf_counter()
        step()
        sync()
        if i >= _WARMUP:
            times.append(time.perf_counter() - began)
    return 1e3 * min(times), 1e3 * float(np.median(times))


def time_optimizer_step(model, config, data, *, repeats: int = 50) -> dict[str, float]:
    """Milliseconds of one optimizer step, for the whole model and for its bases alone.

    The gradient is that of the first ``config.batch_size`` training images
    and stays fixed (the optimizers never write ``p.grad``); three untimed
    steps come first. The fastest of ``repeats`` steps estimates the cost on
    a machine shared with other work (slower steps were interrupted); the
    median is returned too. The model's weights change.

    Parameters
    ----------
    model : Backbone
        A model with a GCR head ``model.fc``.
    config : TrainConfig
        Gives the optimizer, its settings and the batch size.
    data : DataSplits
        The training images (shape ``(N, C, H, W)``) and labels.
    repeats : int
        Timed steps.

    Returns
    -------
    dict
        ``step_ms`` and ``step_ms_median`` (the optimizer of
        ``config.optimizer`` over the model), ``bases_step_ms`` and
        ``bases_step_ms_median`` (the optimizer the bases are trained with,
        :func:`~grassmann_cls.training.recipe.build_bases_optimizer`, over
        ``model.fc.bases`` alone).
    """
    device = next(model.parameters()).device
    images, labels = data.train.tensors
    batch = slice(0, min(config.batch_size, len(labels)))
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images[batch].to(device)), labels[batch].to(device)).backward()
    whole = OPTIMIZERS.resolve(config.optimizer)(model, config)
    bases = build_bases_optimizer([model.fc.bases], config)
    (step, step_median), (bases_step, bases_median) = (_step_ms(o.step, repeats, device) for o in (whole, bases))
    return {
        "step_ms": step,
        "step_ms_median": step_median,
        "bases_step_ms": bases_step,
        "bases_step_ms_median": bases_median,
    }


def _fit(errors: Sequence[float]) -> float | None:
    """Log-log slope of ``errors`` over :data:`STEPS`; ``None`` when the map is exact."""
    if max(errors) < _EXACT:
        return None
    return float(np.polyfit(np.log(STEPS), np.log(np.maximum(errors, 1e-300)), 1)[0])


def _fixture(n: int, k: int, samples: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    manifold = Grassmann()
    x = manifold.random(samples, n, k, dtype=torch.float64, generator=gen).as_subclass(torch.Tensor)
    u, v = (manifold.random_tangent(x, generator=gen) for _ in range(2))
    unit = torch.linalg.matrix_norm(u, keepdim=True)
    return manifold, x, u / unit, v / torch.linalg.matrix_norm(v, keepdim=True)


def agreement_with_exp(
    retraction: str | Callable, n: int, k: int, *, samples: int = 4, seed: int = 0
) -> dict[str, Any]:
    r"""How closely a retraction follows the exponential map, measured in float64.

    For ``samples`` random points ``x`` of :math:`\mathrm{Gr}(n, k)` and unit
    tangent vectors ``u``, the mean errors
    :math:`\|R(x, tu) - \exp_x(tu)\|_F` (bases) and
    :math:`d(R(x, tu), \exp_x(tu))` (subspaces, geodesic distance) at every
    ``t`` of :data:`STEPS`, and their log-log slopes. A slope of ``p + 1``
    means agreement to order ``p``; ``None`` means exact (every error below
    1e-12).

    Returns
    -------
    dict
        ``t, bases_error, subspace_error, bases_slope, subspace_slope``.
    """
    fn = RETRACTIONS.resolve(retraction)
    manifold, x, u, _ = _fixture(n, k, samples, seed)
    bases, subspaces = [], []
    with torch.no_grad():
        for t in STEPS:
            y, e = fn(x, t * u), expmap(x, t * u)
            bases.append(float(torch.linalg.matrix_norm(y - e).mean()))
            subspaces.append(float(manifold.dist(y, e).mean()))
    return {
        "t": list(STEPS),
        "bases_error": bases,
        "subspace_error": subspaces,
        "bases_slope": _fit(bases),
        "subspace_slope": _fit(subspaces),
    }


def agreement_with_parallel(
    transport: str | Callable, n: int, k: int, *, samples: int = 4, seed: int = 0
) -> dict[str, Any]:
    r"""How closely a vector transport follows parallel transport along :math:`\exp_x(tu)`, in float64.

    Mean :math:`\|\mathcal T(x, tu, y, v) - P(x, tu, y, v)\|_F` with
    :math:`y = \exp_x(tu)` over :data:`STEPS` and its log-log slope (as in
    :func:`agreement_with_exp`).

    Returns
    -------
    dict
        ``t, error, slope``.
    """
    fn, parallel = TRANSPORTS.resolve(transport), TRANSPORTS.resolve("parallel")
    _, x, u, v = _fixture(n, k, samples, seed)
    errors = []
    with torch.no_grad():
        for t in STEPS:
            y = expmap(x, t * u)
            errors.append(float(torch.linalg.matrix_norm(fn(x, t * u, y, v) - parallel(x, t * u, y, v)).mean()))
    return {"t": list(STEPS), "error": errors, "slope": _fit(errors)}
