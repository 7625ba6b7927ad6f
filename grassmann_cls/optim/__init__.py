"""Optimizers for models with Grassmann bases (Riemannian SGD and Adam, landing SGD), their base class, and one schedule for a hybrid set-up."""

from .adam import RiemannianAdam
from .base import ManifoldOptimizer
from .hybrid import HybridOptimizer, hybrid_optimizer, split_parameters
from .landing import LandingSGD
from .rsgd import GRASSMANN_MOMENTUM, NONFINITE, PAPER_RECIPE, RiemannianSGD, is_manifold_parameter

__all__ = [
    "ManifoldOptimizer",
    "RiemannianSGD",
    "RiemannianAdam",
    "LandingSGD",
    "HybridOptimizer",
    "hybrid_optimizer",
    "split_parameters",
    "is_manifold_parameter",
    "GRASSMANN_MOMENTUM",
    "PAPER_RECIPE",
    "NONFINITE",
]
