r"""Logit functions of a :class:`~grassmann_cls.GrassmannHead`.

Every entry has the signature ``logit(coefficients, feature_norm) -> similarity``:

``coefficients``
    :math:`S_c^T \hat x` for every class, shape ``(..., C, k)``, float32 or
    float64. Padded columns of variable-``k`` heads are exactly zero.
``feature_norm``
    :math:`\|\hat x\|`, shape ``(..., 1)``: 1 for normalised features (0 for a
    zero feature), :math:`\|x\|` otherwise.
``similarity``
    Shape ``(..., C)``; the head multiplies it by its ``scale``.

Entries run inside the head's ``forward`` on what the head computed and do
not check their arguments (the head checks the features' shape, dtype and
device instead).

Entries depend on the coefficients only through :math:`\|S_c^T \hat x\|`, so
they are invariant under :math:`S_c \to S_c Q`, and their gradients are finite
for features inside and orthogonal to a class subspace, and for zero features.

=======================  =============================================  ===========
name                     similarity                                      range (unit x)
=======================  =============================================  ===========
``projection``           :math:`\|S_c^T \hat x\|` (the paper)            [0, 1]
``squared_projection``   :math:`\|S_c^T \hat x\|^2 = \cos^2\theta_c`     [0, 1]
``neg_angle``            :math:`-\theta_c`                               [-pi/2, 0]
=======================  =============================================  ===========

(:math:`\theta_c` is the angle between :math:`\hat x` and the subspace of class ``c``.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from manifolds import Registry

__all__ = ["LOGITS", "projection", "squared_projection", "neg_angle"]

Logit = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOGITS: Registry = Registry("logit")


@LOGITS.register
def projection(coefficients: torch.Tensor, feature_norm: torch.Tensor) -> torch.Tensor:
    r"""Norm of the projection onto the class subspace (the paper's logit).

    .. math:: \ell_c = \|S_c^T \hat x\|_2

    ``torch.linalg.vector_norm`` has a zero gradient at zero, so features
    orthogonal to a subspace keep finite gradients.
    """
    return torch.linalg.vector_norm(coefficients, dim=-1)


@LOGITS.register
def squared_projection(coefficients: torch.Tensor, feature_norm: torch.Tensor) -> torch.Tensor:
    r"""Squared projection norm, the squared cosine of the angle to the subspace.

    .. math:: \ell_c = \|S_c^T \hat x\|_2^2 = \|\hat x\|^2 \cos^2\theta_c
    """
    return coefficients.square().sum(dim=-1)


@LOGITS.register
def neg_angle(coefficients: torch.Tensor, feature_norm: torch.Tensor) -> torch.Tensor:
    r"""Minus the angle between the feature and the class subspace.

    .. math:: \ell_c = -\theta_c = -\operatorname{atan2}\Bigl(
              \sqrt{\|\hat x\|^2 - \|S_c^T \hat x\|^2},\; \|S_c^T \hat x\|\Bigr)
    """
    # Note [angle to a subspace]
    # The sine part comes from ||x||^2 - ||S^T x||^2, which loses about
    # sqrt(eps) for tiny angles (the exact residual (I - S S^T) x would cost an
    # n-vector per class and sample). Both square roots are guarded with a
    # double `where` so the gradient is finite (zero) where the feature lies in
    # the subspace, and a zero feature gets angle 0 with zero gradient.
    cos = torch.linalg.vector_norm(coefficients, dim=-1)
    sin2 = feature_norm.square() - cos.square()
    positive = sin2 > 0
    sin = torch.where(positive, sin2.clamp_min(torch.finfo(sin2.dtype).tiny).sqrt(), 0.0)
    zero = (feature_norm == 0).expand_as(cos)
    theta = torch.atan2(torch.where(zero, 0.0, sin), torch.where(zero, 1.0, cos))
    return -theta
