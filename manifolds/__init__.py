"""Geometry of the Grassmann manifold for PyTorch and geoopt.

This package is geometry only: the :class:`Grassmann` and :class:`PaddedGrassmann`
manifolds with the in-place steps optimizers call (:mod:`manifolds.stepping`),
registries of retractions, vector transports and subspace distances, exact
exp/log maps, principal angles, argument checks (:mod:`manifolds.checks`) and
interop with geomstats and scipy.
"""

from . import checks, errors
from .angles import logmap, principal_angles
from .distances import DISTANCES, cdist
from .grassmann import Grassmann
from .interop import from_projector, from_scipy, to_projector, to_scipy
from .padded import PaddedGrassmann
from .registry import Registry
from .retractions import RETRACTIONS, expmap
from .stepping import MOMENTUM_STYLES, InPlaceManifold
from .transports import TRANSPORTS

__all__ = [
    "Grassmann",
    "PaddedGrassmann",
    "InPlaceManifold",
    "MOMENTUM_STYLES",
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
    "checks",
    "errors",
]
