r"""Feature and class-subspace statistics: variability, class separation, principal angles.

Definitions (``f_i`` a feature, ``\hat f_i = f_i / \max(\|f_i\|, 10^{-12})``,
``I_c`` the samples of class ``c`` with ``N_c = |I_c|``, ``K`` the classes present):

Intra-class variability (degrees), the mean pairwise angle within a class,
averaged over classes with at least two samples:

.. math:: V = \frac1{K'}\sum_c \frac{1}{N_c(N_c-1)} \sum_{i \ne j \in I_c}
          \frac{180}{\pi}\arccos\bigl(\hat f_i^T \hat f_j\bigr).

Class separation (Kornblith et al. 2021, "Why do better loss functions lead to
less transferable features?", with cosine distance :math:`d = 1 - \hat f_i^T\hat f_j`):

.. math:: R^2 = 1 - \frac{\bar d_\text{within}}{\bar d_\text{total}},\quad
          \bar d_\text{within} = \frac1K \sum_c \frac{1}{N_c^2}\sum_{i,j \in I_c} d_{ij},\quad
          \bar d_\text{total} = \frac1{K^2} \sum_{c,c'} \frac{1}{N_c N_{c'}}
                                 \sum_{i \in I_c, j \in I_{c'}} d_{ij}.

Both sums include ``i = j`` (``d_ii = 0``), as in the paper. Because
:math:`\sum_{i,j} \hat f_i^T \hat f_j = \|\sum_i \hat f_i\|^2`, with class means
:math:`\mu_c = \frac1{N_c}\sum_{i\in I_c}\hat f_i` this is exactly
:math:`\bar d_\text{within} = 1 - \frac1K\sum_c\|\mu_c\|^2` and
:math:`\bar d_\text{total} = 1 - \|\frac1K\sum_c\mu_c\|^2`: no ``N x N`` matrix.

Principal angles between class subspaces use
:func:`manifolds.principal_angles` on the bases of a
:class:`~grassmann_cls.head.GrassmannHead` (a vector head's class vectors are
1-dimensional subspaces).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from grassmann_cls.errors import ManifoldTypeError, ShapeError
from manifolds import checks as _checks
from manifolds import inplace, principal_angles

__all__ = [
    "within_class_angles",
    "intra_class_variability",
    "class_separation",
    "class_bases",
    "class_principal_angles",
    "pair_angles",
    "distinct_pairs",
    "feature_statistics",
]

# Note [pairwise angles in float64]
# arccos loses about sqrt(eps) near cos = 1 (2e-4 rad in float32). Gram
# matrices are formed in float64, where the loss is ~1.5e-8 rad (1e-6
# degrees), far below what a mean over many pairs can resolve.
_BLOCK = 2048


def _check_features(features: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(features, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ManifoldTypeError(
            f"features and labels must be tensors; got {type(features).__name__} and {type(labels).__name__}"
        )
    if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels) or not len(labels):
        raise ShapeError(
            f"features must be (N, n) and labels (N,) with N >= 1; "
            f"got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    if not features.is_floating_point() or labels.dtype not in (torch.int32, torch.int64) or labels.min() < 0:
        raise ShapeError(
            f"features must be floating and labels non-negative integers; got {features.dtype} and {labels.dtype}"
        )
    _checks.finite(features=features)


def _unit(features: torch.Tensor) -> torch.Tensor:
    f = features.to(torch.float64)
    return f / torch.linalg.vector_norm(f, dim=1, keepdim=True).clamp_min(1e-12)


def within_class_angles(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean pairwise angle (degrees) between distinct features of each class.

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(N, n)``; zero rows count as orthogonal to everything.
    labels : torch.Tensor
        Integer labels of shape ``(N,)``.

    Returns
    -------
    torch.Tensor
        Shape ``(max(labels) + 1,)``, float64; ``nan`` for classes with fewer
        than two samples.

    Raises
    ------
    ShapeError
        If ``features`` is not a floating ``(N, n)`` tensor with ``N >= 1`` or
        ``labels`` not ``N`` non-negative int32/int64 labels.
    NonFiniteError
        If ``features`` holds NaN or Inf.
    """
    _check_features(features, labels)
    unit = _unit(features)
    num_classes = int(labels.max()) + 1
    out = torch.full((num_classes,), math.nan, dtype=torch.float64)
    for c in range(num_classes):
        f = unit[labels == c]
        m = len(f)
        if m < 2:
            continue
        total = sum(_angle_sum(f[s : s + _BLOCK], f, s) for s in range(0, m, _BLOCK))
        out[c] = total / (m * (m - 1))
    return torch.rad2deg(out)


def _angle_sum(rows: torch.Tensor, f: torch.Tensor, start: int) -> torch.Tensor:
    """Sum of angles between ``rows`` (b, n) and all of ``f`` (m, n), self-pairs excluded."""
    angles = torch.arccos((rows @ f.T).clamp(-1.0, 1.0))
    diagonal = angles.diagonal(offset=start)
    return angles.sum() - diagonal.sum()


def intra_class_variability(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Intra-class variability in degrees (the module's :math:`V`).

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(N, n)``.
    labels : torch.Tensor
        Integer labels of shape ``(N,)``.

    Returns
    -------
    float
        Mean over classes with at least two samples of the mean pairwise
        within-class angle; ``nan`` if no class has two samples.

    Raises
    ------
    ShapeError
        If ``features`` is not a floating ``(N, n)`` tensor with ``N >= 1`` or
        ``labels`` not ``N`` non-negative int32/int64 labels.
    NonFiniteError
        If ``features`` holds NaN or Inf.

    Examples
    --------
    >>> import torch
    >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    >>> round(intra_class_variability(f, torch.tensor([0, 0, 1, 1])), 6)
    45.0
    """
    per_class = within_class_angles(features, labels)
    return float(per_class.nanmean()) if not per_class.isnan().all() else math.nan


def class_separation(features: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Class separation :math:`R^2` with cosine distance (Kornblith et al. 2021).

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(N, n)``.
    labels : torch.Tensor
        Integer labels of shape ``(N,)``; classes without samples are ignored.

    Returns
    -------
    float
        :math:`1 - \bar d_\text{within} / \bar d_\text{total}` (see the module
        docstring), at most 1; ``nan`` when all features point the same way
        (:math:`\bar d_\text{total} = 0`).

    Raises
    ------
    ShapeError
        If ``features`` is not a floating ``(N, n)`` tensor with ``N >= 1`` or
        ``labels`` not ``N`` non-negative int32/int64 labels.
    NonFiniteError
        If ``features`` holds NaN or Inf.

    Examples
    --------
    >>> import torch
    >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> class_separation(f, torch.tensor([0, 0, 1, 1]))
    1.0
    """
    _check_features(features, labels)
    unit = _unit(features)
    counts = torch.bincount(labels)
    sums = torch.zeros(len(counts), unit.shape[1], dtype=unit.dtype).index_add_(0, labels, unit)
    present = counts > 0
    means = sums[present] / counts[present, None]
    d_within = 1.0 - means.square().sum(1).mean()
    d_total = 1.0 - means.mean(0).square().sum()
    if float(d_total) <= 0.0:
        return math.nan
    return float(1.0 - d_within / d_total)


def class_bases(head: nn.Module | torch.Tensor) -> torch.Tensor:
    """Class subspaces as orthonormal bases of shape ``(C, n, k)``.

    Parameters
    ----------
    head : GrassmannHead, nn.Linear, module with ``weight``, or torch.Tensor
        A head with ``bases`` of shape ``(C, n, k)`` (one ``k`` for all
        classes); a vector head whose
        ``weight`` ``(C, n)`` holds one class vector per row (each becomes a
        1-dimensional subspace, ``k = 1``); or a tensor of shape ``(C, n, k)``.

    Returns
    -------
    torch.Tensor
        Shape ``(C, n, k)``, detached, orthonormal columns per class.
    """
    if isinstance(head, torch.Tensor):
        bases = head.detach()
    elif hasattr(head, "bases"):
        dims = tuple(getattr(head, "subspace_dims", ()))
        if len(set(dims)) > 1:
            raise ShapeError(f"principal angles need one k for all classes; this head has k = {sorted(set(dims))}")
        bases = cast(torch.Tensor, head.bases).detach()  # a head's bases are a (ManifoldParameter) tensor
    elif isinstance(weight := getattr(head, "weight", None), torch.Tensor) and weight.dim() == 2:
        w = weight.detach()
        bases = (w / torch.linalg.vector_norm(w, dim=1, keepdim=True).clamp_min(1e-12))[:, :, None]
    else:
        raise ShapeError(f"expected a head with bases or a (C, n) weight, or a tensor; got {type(head).__name__}")
    if bases.dim() != 3 or not 1 <= bases.shape[2] <= bases.shape[1]:
        raise ShapeError(f"class bases must have shape (C, n, k) with 1 <= k <= n; got {tuple(bases.shape)}")
    return bases


def class_principal_angles(head: nn.Module | torch.Tensor) -> torch.Tensor:
    """Principal angles (radians) between every pair of class subspaces.

    Parameters
    ----------
    head : GrassmannHead, nn.Linear or torch.Tensor
        Anything :func:`class_bases` accepts, or a :class:`~grassmann_cls.GrassmannHead`
        with one ``k_c`` per class (its padding columns are left out).

    Returns
    -------
    torch.Tensor
        Shape ``(C, C, k)`` with ``k = max k_c``, ascending along the last dim;
        the diagonal is 0. Classes ``i, j`` have ``min(k_i, k_j)`` angles; the
        entries after those are NaN (none when all classes share ``k``).
    """
    dims = tuple(getattr(head, "subspace_dims", ())) if isinstance(head, nn.Module) else ()
    if len(set(dims)) > 1:
        assert isinstance(head, nn.Module), "only a module has subspace_dims"
        return _padded_class_angles(cast(torch.Tensor, head.bases).detach(), dims)
    bases = class_bases(head)
    c, n, k = bases.shape
    block = max(1, (1 << 22) // max(1, c * n * k))
    # Orthonormal bases of one k (the usual case) take the float64 kernel
    # (faster on CPU); others, e.g. bases drifted by landing, are
    # orthonormalised by principal_angles first. tests/grassmann_cls hold both
    # routes to the same angles.
    angles = _fast_angles if _orthonormal(bases) else principal_angles
    rows = [angles(bases[s : s + block, None], bases[None]) for s in range(0, c, block)]
    return torch.cat(rows)


def _fast_angles(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return inplace.principal_angles(x, y).to(x.dtype)


def _orthonormal(bases: torch.Tensor) -> bool:
    """Whether every basis of ``bases`` ``(C, n, k)`` is orthonormal to the library's tolerance."""
    if not bases.numel() or bases.dtype not in _checks.LAPACK_DTYPES:
        return False
    eye = torch.eye(bases.shape[-1], dtype=bases.dtype, device=bases.device)
    error = (bases.mT @ bases - eye).abs().amax()
    return bool(error <= _checks.orthonormality_tolerance(bases.dtype, bases.shape[-2]))


def _padded_class_angles(bases: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """:func:`class_principal_angles` for padded bases ``(C, n, k_max)``, one group of classes per ``k``."""
    c, _, k_max = bases.shape
    out = bases.new_full((c, c, k_max), math.nan)
    k_of = torch.tensor(dims)
    for ka in sorted(set(dims)):
        rows = (k_of == ka).nonzero().flatten()
        for kb in sorted(set(dims)):
            cols = (k_of == kb).nonzero().flatten()
            angles = principal_angles(bases[rows, None, :, :ka], bases[None, cols, :, :kb])
            out[rows[:, None], cols[None, :], : min(ka, kb)] = angles
    return out


def pair_angles(angles: torch.Tensor) -> torch.Tensor:
    """The angles of :func:`distinct_pairs` as one flat tensor, without the NaN entries of unequal ``k``."""
    pairs = distinct_pairs(angles).flatten()
    return pairs[~torch.isnan(pairs)]


def distinct_pairs(angles: torch.Tensor) -> torch.Tensor:
    """The rows ``angles[i, j]`` with ``i < j`` of a ``(C, C, k)`` tensor, shape ``(C(C-1)/2, k)``."""
    i, j = torch.triu_indices(angles.shape[0], angles.shape[1], offset=1)
    return angles[i, j]


def feature_statistics(features: torch.Tensor, labels: torch.Tensor, head=None) -> dict[str, float]:
    """Variability, :math:`R^2` and (given a head) principal-angle summaries.

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(N, n)``.
    labels : torch.Tensor
        Shape ``(N,)``.
    head : optional
        Anything :func:`class_bases` accepts.

    Returns
    -------
    dict
        ``variability`` (degrees), ``r2``, and with a head
        ``min_principal_angle``, ``mean_principal_angle`` (degrees, over all
        class pairs and all ``k`` angles) and ``mean_smallest_principal_angle``.
    """
    out = {
        "variability": intra_class_variability(features, labels),
        "r2": class_separation(features, labels),
    }
    if head is not None:
        pairs = torch.rad2deg(distinct_pairs(class_principal_angles(head)))
        every = pairs[~torch.isnan(pairs)]  # pairs of unequal k have fewer angles (NaN-padded)
        out["min_principal_angle"] = float(every.min())
        out["mean_principal_angle"] = float(every.mean())
        out["mean_smallest_principal_angle"] = float(pairs[:, 0].mean())
    return out
