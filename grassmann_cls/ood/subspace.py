r"""OOD scores from the class subspaces of a :class:`~grassmann_cls.GrassmannHead`.

Both scores work on the normalised feature :math:`\hat x = x / \|x\|` and the
class bases :math:`S_c` (``head.bases``, shape ``(C, n, k)``; the zero columns
of a head with one ``k_c`` per class add nothing), and ignore the logits.

``max_projection``
    :math:`\max_c \|S_c^T \hat x\| = \cos \theta_{\min}`, in :math:`[0, 1]`.
``subspace_residual``
    :math:`-\|(I - Q Q^T) \hat x\|`, in :math:`[-1, 0]`, with :math:`Q` an
    orthonormal basis of :math:`\operatorname{span}(S_1, \dots, S_C)`.

Higher means more in-distribution for both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from manifolds import checks

from ..head import GrassmannHead
from .base import OODScore, _register

__all__ = ["MaxProjection", "SubspaceResidual", "class_span"]


def _normalized(features: torch.Tensor, eps: float) -> torch.Tensor:
    return F.normalize(features.double(), dim=-1, eps=eps)


@_register
class MaxProjection(OODScore):
    r"""The cosine of the smallest angle between the feature and any class subspace.

    .. math:: s(x) = \max_c \|S_c^T \hat x\|_2 = \max_c \cos \theta_c(\hat x),
              \qquad \hat x = x / \max(\|x\|, \varepsilon).

    For a head with the ``projection`` logit and normalised features this is
    the largest logit divided by the scale; unlike ``max_logit`` it does not
    depend on the head's logit function, scale or normalisation. Applies to
    :class:`~grassmann_cls.GrassmannHead` only; fit with ``fit(head)``.
    """

    name = "max_projection"
    applies_to = (GrassmannHead,)
    needs_fit = True

    def _fit(self, head, features, labels):
        self.eps = head.eps
        self.weight = head.linear_weight.detach().double()
        self.shape = (head.num_classes, head.max_subspace_dim)

    def _score(self, features, logits):
        x = _normalized(features, self.eps)
        coefficients = (x @ self.weight.to(x.device).T).unflatten(-1, self.shape)
        return torch.linalg.vector_norm(coefficients, dim=-1).amax(dim=-1)


def class_span(head: GrassmannHead, rtol: float | None = None) -> torch.Tensor:
    r"""An orthonormal basis of the span of all class subspaces of ``head``.

    The left singular vectors of :math:`[S_1, \dots, S_C]` (shape
    ``(n, C k)``) whose singular values exceed ``rtol`` times the largest,
    in float64.

    Parameters
    ----------
    head : GrassmannHead
        The head whose ``bases`` (shape ``(C, n, k)``) are spanned.
    rtol : float, optional
        Relative rank tolerance; by default ``max(n, C k) * eps`` of the bases' dtype.

    Returns
    -------
    torch.Tensor
        :math:`Q`, shape ``(n, r)`` with ``r`` the numerical rank, float64.
    """
    weight = head.linear_weight.detach()
    if rtol is None:
        rtol = max(weight.shape) * torch.finfo(weight.dtype).eps
    rtol = checks.real("rtol", rtol, minimum=0.0, maximum=1.0, strict_max=True)
    # Note [span of the class subspaces]
    # A thin SVD of the (n, C*k) stacked bases, never an n x n projector:
    # with C*k < n it costs n (C k)^2. Padded zero columns give zero singular
    # values and drop out with the rank cut.
    left, singular, _ = torch.linalg.svd(weight.double().T, full_matrices=False)
    rank = int((singular > rtol * singular[0]).sum())
    return left[:, :rank]


@_register
class SubspaceResidual(OODScore):
    r"""Minus the distance of the normalised feature from the span of all class subspaces.

    With :math:`Q` an orthonormal basis of
    :math:`\operatorname{span}(S_1, \dots, S_C)` (:func:`class_span`):

    .. math:: s(x) = -\|\hat x - Q Q^T \hat x\|_2 = -\sin \angle(\hat x, \operatorname{span} Q)
              \in [-1, 0].

    ``max_projection`` asks how close the feature is to the best class; this
    asks how much of it lies outside everything the head can represent, the
    GCR analogue of ViM's residual with the class subspaces in place of a PCA
    of the features. A feature inside the span scores 0, one orthogonal to
    every class scores -1. It carries information only while the span is a
    proper subspace (``C k < n`` or overlapping classes): a head whose classes
    span all of :math:`\mathbb{R}^n` is refused by :meth:`check_head`.
    Applies to :class:`~grassmann_cls.GrassmannHead` only; fit with ``fit(head)``.

    Parameters
    ----------
    rtol : float, optional
        The rank tolerance of :func:`class_span`.
    """

    name = "subspace_residual"
    applies_to = (GrassmannHead,)
    needs_fit = True

    def __init__(self, *, rtol: float | None = None):
        super().__init__()
        self.rtol = None if rtol is None else checks.real("rtol", rtol, minimum=0.0, maximum=1.0, strict_max=True)

    def check_head(self, head):
        ok, reason = super().check_head(head)
        if not ok:
            return ok, reason
        rank = class_span(head, self.rtol).shape[1]
        if rank == head.in_features:
            return False, (
                f"the class subspaces of the head span all of R^n (rank {rank} = n); "
                f"'subspace_residual' would be 0 for every input (C*k = "
                f"{head.num_classes * head.max_subspace_dim}, n = {head.in_features})"
            )
        return True, ""

    def _fit(self, head, features, labels):
        self.eps = head.eps
        self.span = class_span(head, self.rtol)

    def _score(self, features, logits):
        x = _normalized(features, self.eps)
        span = self.span.to(x.device)
        return -torch.linalg.vector_norm(x - (x @ span) @ span.T, dim=-1)

    def _options(self):
        return {"rtol": self.rtol}
