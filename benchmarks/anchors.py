"""Optional library anchors (pymanopt, geomstats), imported only if installed.

pymanopt is not a dependency of the project: ``make bench`` installs it into
the virtualenv. geomstats (a test dependency) forms ``n x n`` projectors and
matrix exponentials/logarithms per class; it runs only where ``n <= 1024``,
on one class (pair), scaled to the full stack.
"""

from __future__ import annotations

import os

import harness as H
import torch

GEOMSTATS_MAX_N = 1024


def pymanopt_grassmann(w: H.Workload):
    """pymanopt's ``Grassmann(n, k, k=C)`` (a product of C copies), or ``None``."""
    try:
        from pymanopt.manifolds import Grassmann
    except ImportError:
        return None
    return Grassmann(w.n, w.k, k=w.classes)


def _geomstats():
    os.environ.setdefault("GEOMSTATS_BACKEND", "numpy")
    try:
        from geomstats.geometry.grassmannian import Grassmannian
    except ImportError:
        return None
    return Grassmannian


def geomstats_exp(w: H.Workload, x: torch.Tensor, u: torch.Tensor):
    """``(callable, classes used)`` timing geomstats' exp on one class, or ``None``."""
    grassmannian = _geomstats()
    if grassmannian is None or w.n > GEOMSTATS_MAX_N:
        return None
    from manifolds.interop import tangent_to_projector, to_projector

    space = grassmannian(w.n, w.k)
    p = to_projector(x[:1].double()).numpy()
    dp = tangent_to_projector(x[:1].double(), u[:1].double()).numpy()
    return (lambda: space.metric.exp(dp, p)), 1


def geomstats_dist(w: H.Workload, x, y):
    """``(callable, pairs used)`` timing geomstats' distance on one pair, or ``None``."""
    grassmannian = _geomstats()
    if grassmannian is None or w.n > GEOMSTATS_MAX_N:
        return None
    space = grassmannian(w.n, w.k)
    p, q = x[:1] @ x[:1].swapaxes(-1, -2), y[:1] @ y[:1].swapaxes(-1, -2)
    return (lambda: space.metric.dist(p, q) / 2**0.5), 1


def describe() -> str:
    """Which optional anchors are available, for the report header."""
    parts = []
    for name in ("pymanopt", "geomstats", "geoopt", "scipy"):
        try:
            module = __import__(name)
            parts.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)
