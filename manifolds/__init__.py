"""Geometry of the Grassmann manifold for PyTorch and geoopt.

This package is geometry only: the :class:`Grassmann` manifold, registries of
retractions, vector transports and subspace distances, exact exp/log maps,
principal angles and interop with geomstats and scipy.
"""

from . import errors
from .angles import logmap, principal_angles
from .distances import DISTANCES, cdist
from .grassmann import Grassmann
from .interop import from_projector, from_scipy, to_projector, to_scipy
from .registry import Registry
from .retractions import RETRACTIONS, expmap
from .transports import TRANSPORTS

__all__ = [
    "Grassmann",
    "Registry",
    "RETRACTIONS",
    "TRANSPORTS",
    "DISTANCES",
    "cdist",
    "expmap",
    "logmap",
    "principal_angles",
    "to_projector",
    "from_projector",
    "to_scipy",
    "from_scipy",
    "errors",
]
