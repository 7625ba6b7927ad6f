"""Post-hoc out-of-distribution (OOD) scores and detection metrics.

Every score is an :class:`OODScore` registered in :data:`OOD_SCORES`: it is
computed from a batch of features and logits of a trained model, higher
meaning more in-distribution, after a :meth:`~OODScore.fit` on the head and,
where needed, the training features and labels. Each declares the heads it
applies to and refuses the others with a :class:`~grassmann_cls.errors.ConfigError`.

=====================  ===========================  ==================================
name                   applies to                   fit needs
=====================  ===========================  ==================================
``msp``                any head                     nothing
``max_logit``          any head                     nothing
``energy``             any head                     nothing
``mahalanobis``        any head                     training features and labels
``vim``                ``nn.Linear``, GCR heads     head and training features
``max_projection``     GCR heads                    head
``subspace_residual``  GCR heads (proper span)      head
=====================  ===========================  ==================================

:func:`ood_metrics` turns the scores of in-distribution and OOD inputs into
AUROC, AUPR-in, AUPR-out and FPR95.

Examples
--------
>>> import torch
>>> from grassmann_cls import GrassmannHead
>>> from grassmann_cls.ood import make_score, ood_metrics
>>> head = GrassmannHead(8, 3, 2, generator=torch.Generator().manual_seed(0))
>>> score = make_score("max_projection").fit(head)
>>> features = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
>>> score(features, head(features)).shape
torch.Size([5])
"""

from .base import OOD_SCORES, OODScore, make_score
from .baselines import Energy, Mahalanobis, MaxLogit, MaxSoftmaxProbability, ViM, vim_default_dim
from .metrics import METRICS, ood_metrics
from .subspace import MaxProjection, SubspaceResidual, class_span

__all__ = [
    "OOD_SCORES",
    "OODScore",
    "make_score",
    "ood_metrics",
    "METRICS",
    "MaxSoftmaxProbability",
    "MaxLogit",
    "Energy",
    "Mahalanobis",
    "ViM",
    "vim_default_dim",
    "MaxProjection",
    "SubspaceResidual",
    "class_span",
]
