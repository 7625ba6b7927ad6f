r"""The standard post-hoc OOD baselines: logit scores, Mahalanobis and ViM.

=================  ===========================================================  ============
name               score (higher = in-distribution)                             fit needs
=================  ===========================================================  ============
``msp``            :math:`\max_c \operatorname{softmax}(\ell)_c`                nothing
``max_logit``      :math:`\max_c \ell_c`                                        nothing
``energy``         :math:`T \log \sum_c e^{\ell_c / T}`                         nothing
``mahalanobis``    :math:`-\min_c (x - \mu_c)^T \Sigma^{+} (x - \mu_c)`         features, labels
``vim``            :math:`\log \sum_c e^{\ell_c} - \alpha \|x^{P^\perp}\|`      head, features
=================  ===========================================================  ============
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import EmpiricalCovariance, LedoitWolf
from torch import nn

from manifolds import checks

from ..errors import ShapeError
from ..head import GrassmannHead
from .base import OODScore, _register

__all__ = ["MaxSoftmaxProbability", "MaxLogit", "Energy", "Mahalanobis", "ViM", "vim_default_dim"]


@_register
class MaxSoftmaxProbability(OODScore):
    r"""Maximum softmax probability (Hendrycks & Gimpel, 2017), for any head.

    .. math:: s(x) = \max_c \frac{e^{\ell_c}}{\sum_j e^{\ell_j}}

    Computed in float64, where it saturates at 1 only for logit gaps above
    about 37.
    """

    name = "msp"

    def _score(self, features, logits):
        return torch.softmax(logits.double(), dim=-1).amax(dim=-1)


@_register
class MaxLogit(OODScore):
    r"""Maximum logit (Hendrycks et al., 2022), for any head.

    .. math:: s(x) = \max_c \ell_c
    """

    name = "max_logit"

    def _score(self, features, logits):
        return logits.double().amax(dim=-1)


@_register
class Energy(OODScore):
    r"""Negative free energy of the logits (Liu et al., 2020), for any head.

    .. math:: s(x) = -E(x; T) = T \log \sum_c e^{\ell_c / T}

    Parameters
    ----------
    temperature : float
        :math:`T > 0`; 1 as in the paper.
    """

    name = "energy"

    def __init__(self, *, temperature: float = 1.0):
        super().__init__()
        self.temperature = checks.real("temperature", temperature, minimum=0.0, strict=True)

    def _score(self, features, logits):
        return self.temperature * torch.logsumexp(logits.double() / self.temperature, dim=-1)

    def _options(self):
        return {"temperature": self.temperature}


COVARIANCES = ("empirical", "ledoit_wolf")
"""The covariance estimators of :class:`Mahalanobis` (scikit-learn's)."""


@_register
class Mahalanobis(OODScore):
    r"""Minus the smallest squared Mahalanobis distance to a class mean (Lee et al., 2018).

    Fitted on the training features: class means :math:`\mu_c` over the
    classes present in the labels, and one covariance shared by all classes
    (tied), estimated from the class-centred features
    :math:`x_i - \mu_{y_i}`:

    .. math:: \Sigma = \frac{1}{N} \sum_i (x_i - \mu_{y_i})(x_i - \mu_{y_i})^T,
              \qquad s(x) = -\min_c (x - \mu_c)^T \Sigma^{+} (x - \mu_c).

    :math:`\Sigma^{+}` is scikit-learn's pseudo-inverse of the estimate, so a
    singular covariance (``N < n``, collapsed features) still gives finite
    scores. The squared distance is the paper's confidence score; its square
    root ranks inputs identically. Applies to any head (it uses the features
    only).

    Parameters
    ----------
    covariance : {"empirical", "ledoit_wolf"}
        The maximum-likelihood estimate (the paper), or Ledoit-Wolf shrinkage
        towards a scaled identity for few samples per dimension.
    """

    name = "mahalanobis"
    needs_fit = needs_features = needs_labels = True

    def __init__(self, *, covariance: str = "empirical"):
        super().__init__()
        self.covariance = checks.choice("covariance", covariance, COVARIANCES)

    def _fit(self, head, features, labels):
        x = features.detach().double()
        classes, index = torch.unique(labels, return_inverse=True)
        means = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device)
        means.index_add_(0, index, x)
        means /= torch.bincount(index, minlength=len(classes)).unsqueeze(1).to(x.dtype)
        centred = (x - means[index]).cpu().numpy()
        estimator = EmpiricalCovariance if self.covariance == "empirical" else LedoitWolf
        precision = estimator(assume_centered=True).fit(centred).precision_
        self.classes = classes
        self.means = means
        self.precision = torch.from_numpy(np.ascontiguousarray(precision)).to(x.device)

    def _score(self, features, logits):
        # Note [Mahalanobis without a (B, C, n) difference tensor]
        # (x - m)^T P (x - m) = x^T P x - 2 x^T P m + m^T P m, with P symmetric.
        # In float64 the cancellation costs about eps64 * x^T P x, far below
        # any gap that matters for ranking, and memory stays O(B*C + B*n).
        x = features.double()
        precision = self.precision.to(x.device)
        means = self.means.to(x.device)
        px = x @ precision
        pm = means @ precision
        distances = (px * x).sum(-1, keepdim=True) - 2 * px @ means.T + (pm * means).sum(-1)
        return -distances.clamp_min(0).amin(dim=-1)

    def _options(self):
        return {"covariance": self.covariance}


def vim_default_dim(n: int) -> int:
    """The principal-subspace dimension ``D`` ViM uses for feature dimension ``n``.

    1000 for ``n >= 2048`` and 512 for ``n >= 768`` (the paper's choices for
    its CNNs and vision transformers), else ``n // 2``.
    """
    n = checks.integer("n", n, minimum=1)
    return 1000 if n >= 2048 else 512 if n >= 768 else n // 2


@_register
class ViM(OODScore):
    r"""Virtual-logit matching (Wang et al., CVPR 2022), for linear and GCR heads.

    Fitted on the training features :math:`x_i` (shape ``(N, n)``): the origin
    :math:`u`, the principal subspace :math:`P` spanned by the top ``D``
    eigenvectors of :math:`\frac{1}{N} \sum_i (x_i - u)(x_i - u)^T`, and the
    scale :math:`\alpha` that matches the virtual logit to the real ones:

    .. math:: x^{P^\perp} = (I - P P^T)(x - u), \qquad
              \alpha = \frac{\sum_i \max_c \ell_c(x_i)}{\sum_i \|x_i^{P^\perp}\|}.

    The paper's OOD probability is the softmax weight of the virtual logit
    :math:`\alpha \|x^{P^\perp}\|` among the logits; the score is its log-odds
    of being in-distribution, which ranks inputs identically without
    saturating:

    .. math:: p_0 = \frac{e^{\alpha \|x^{P^\perp}\|}}
                         {\sum_c e^{\ell_c} + e^{\alpha \|x^{P^\perp}\|}}, \qquad
              s(x) = \log \frac{1 - p_0}{p_0}
                   = \log \sum_c e^{\ell_c} - \alpha \|x^{P^\perp}\|.

    The origin is :math:`u = -W^{+} b` for an ``nn.Linear`` head with a bias
    (so that :math:`\ell = W (x - u)` on the row space of ``W``), and
    :math:`u = 0` for a linear head without bias and for a
    :class:`~grassmann_cls.GrassmannHead`, whose logits depend on the direction
    of the feature from the origin. A GCR head that normalises its features is
    scored on the normalised features :math:`\hat x`, the ones its logits see.

    Parameters
    ----------
    dim : int, optional
        ``D``, with ``1 <= D < n``; by default :func:`vim_default_dim`.
    """

    name = "vim"
    applies_to = (nn.Linear, GrassmannHead)
    needs_fit = needs_features = True

    def __init__(self, *, dim: int | None = None):
        super().__init__()
        self.dim = None if dim is None else checks.integer("dim", dim, minimum=1)

    def _fit(self, head, features, labels):
        n = features.shape[1]
        dim = vim_default_dim(n) if self.dim is None else self.dim
        if not 1 <= dim < n:
            raise ShapeError(f"vim's dim must satisfy 1 <= D < n; got D={dim}, n={n}")
        self._normalize = isinstance(head, GrassmannHead) and head.normalize
        self._eps = head.eps if isinstance(head, GrassmannHead) else 0.0
        x = self._view(features.detach())
        if isinstance(head, nn.Linear):
            weight = head.weight.detach().to(device=x.device, dtype=x.dtype)
            bias = None if head.bias is None else head.bias.detach().to(device=x.device, dtype=x.dtype)
            logits = F.linear(x, weight, bias)
            origin = (
                torch.zeros(n, dtype=x.dtype, device=x.device) if bias is None else -torch.linalg.pinv(weight) @ bias
            )
        else:
            logits = head(features.to(head.bases.device)).double().to(x.device)
            origin = torch.zeros(n, dtype=x.dtype, device=x.device)
        centred = x - origin
        # Note [ViM's residual space]
        # eigh returns ascending eigenvalues: the first n - D eigenvectors span
        # the orthogonal complement of the principal subspace, and
        # ||(x - u) @ complement|| is the residual norm without the
        # cancellation of (x - u) - P P^T (x - u).
        _, vectors = torch.linalg.eigh(centred.T @ centred / x.shape[0])
        self.origin = origin
        self.complement = vectors[:, : n - dim].contiguous()
        self.resolved_dim = dim
        residual = torch.linalg.vector_norm(centred @ self.complement, dim=-1)
        self.alpha = float(logits.amax(dim=-1).sum() / residual.sum().clamp_min(torch.finfo(x.dtype).tiny))

    def _view(self, features: torch.Tensor) -> torch.Tensor:
        x = features.double()
        return F.normalize(x, dim=-1, eps=self._eps) if self._normalize else x

    def _residual_norm(self, features: torch.Tensor) -> torch.Tensor:
        """The residual norms, shape ``(B,)``, float64."""
        x = self._view(features) - self.origin.to(features.device)
        return torch.linalg.vector_norm(x @ self.complement.to(x.device), dim=-1)

    def _score(self, features, logits):
        return torch.logsumexp(logits.double(), dim=-1) - self.alpha * self._residual_norm(features)

    def _options(self):
        return {"dim": self.dim}
