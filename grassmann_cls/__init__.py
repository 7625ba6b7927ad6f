"""Grassmann Class Representation (GCR) for PyTorch.

One linear subspace per class, logits from projection norms, trained jointly
with the network by Riemannian SGD. The geometry lives in :mod:`manifolds`.
"""

from manifolds import PaddedGrassmann

from . import errors, ood
from .convert import convert, find_classifier
from .head import GrassmannHead
from .logits import LOGITS
from .optim import (
    HybridOptimizer,
    LandingSGD,
    ManifoldOptimizer,
    RiemannianAdam,
    RiemannianSGD,
    hybrid_optimizer,
    is_manifold_parameter,
    split_parameters,
)

__all__ = [
    "GrassmannHead",
    "PaddedGrassmann",
    "LOGITS",
    "RiemannianSGD",
    "LandingSGD",
    "RiemannianAdam",
    "ManifoldOptimizer",
    "HybridOptimizer",
    "hybrid_optimizer",
    "split_parameters",
    "is_manifold_parameter",
    "convert",
    "find_classifier",
    "errors",
    "ood",
]
