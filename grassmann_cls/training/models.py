r"""Whole classifiers: a backbone whose ``fc`` is a softmax, cosine or GCR head.

===========  =================================================================
head         logits of a feature :math:`x` (:math:`\hat x = x / \|x\|`)
===========  =================================================================
``softmax``  :math:`W x + b` (``nn.Linear``)
``cosine``   :math:`\gamma\, \hat w_c^T \hat x` (:class:`CosineHead`)
``gcr``      :math:`\gamma\, \|S_c^T \hat x\|` (:class:`~grassmann_cls.head.GrassmannHead`)
===========  =================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grassmann_cls.errors import ShapeError
from grassmann_cls.head import GrassmannHead
from grassmann_cls.training.backbones import Backbone, build_backbone
from manifolds import Grassmann, Registry

__all__ = ["HEADS", "CosineHead", "build_model", "softmax", "cosine", "gcr"]

HEADS: Registry = Registry("head")


class CosineHead(nn.Module):
    r"""Cosine softmax head (normalised features and class vectors, fixed scale).

    .. math:: \ell_c = \gamma\, \frac{w_c^T x}{\max(\|w_c\|,\varepsilon)\max(\|x\|,\varepsilon)}

    Parameters
    ----------
    in_features : int
        Feature dimension ``n``.
    num_classes : int
        ``C``.
    scale : float
        :math:`\gamma > 0`.

    Attributes
    ----------
    weight : nn.Parameter
        Class vectors, shape ``(C, n)``.
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 25.0):
        super().__init__()
        self.in_features, self.num_classes, self.scale = int(in_features), int(num_classes), float(scale)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(..., C)`` for features of shape ``(..., n)``."""
        if features.shape[-1:] != (self.in_features,):
            raise ShapeError(f"features must have shape (..., {self.in_features}); got {tuple(features.shape)}")
        return self.scale * F.linear(F.normalize(features, dim=-1), F.normalize(self.weight, dim=-1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, scale={self.scale:g}"


@HEADS.register
def softmax(in_features: int, num_classes: int, config) -> nn.Module:
    """The usual linear classifier with bias."""
    return nn.Linear(in_features, num_classes)


@HEADS.register
def cosine(in_features: int, num_classes: int, config) -> nn.Module:
    """:class:`CosineHead` with ``config.scale``."""
    return CosineHead(in_features, num_classes, scale=config.scale)


@HEADS.register
def gcr(in_features: int, num_classes: int, config) -> nn.Module:
    """:class:`GrassmannHead` with ``config.subspace_dim, scale, logit, retraction, transport``."""
    manifold = Grassmann(retraction=config.retraction, transport=config.transport)
    return GrassmannHead(
        in_features,
        num_classes,
        config.subspace_dim,
        scale=config.scale,
        logit=config.logit,
        manifold=manifold,
    )


def build_model(config, in_shape: tuple[int, int, int], num_classes: int) -> Backbone:
    """The backbone of ``config`` with its ``fc`` replaced by ``config.head``.

    Parameters
    ----------
    config : TrainConfig
        Uses ``backbone, width, head`` and the head's options.
    in_shape : (int, int, int)
        ``(C, H, W)`` of the images.
    num_classes : int
        Number of classes.

    Returns
    -------
    Backbone
        ``model.features(x)`` of shape ``(B, n)``, ``model(x)`` of shape ``(B, num_classes)``.
    """
    model = build_backbone(config.backbone, in_shape=in_shape, num_classes=num_classes, width=config.width)
    model.fc = HEADS.resolve(config.head)(model.feature_dim, num_classes, config)
    return model
