r"""Long-tailed training sets and the many / medium / few-shot class groups.

:func:`long_tail` draws a long-tailed training split with the exponential
profile of Cao et al. (2019, LDAM),

.. math:: n_c = \left\lfloor n_{\max} \, R^{-c / (C - 1)} \right\rfloor, \qquad c = 0, \dots, C - 1,

where :math:`R = n_0 / n_{C-1}` is the imbalance ratio. Class 0 is the head
(``n_max`` samples) and class ``C - 1`` the tail (``n_max / R``), in the
data set's label order (after ``classes`` relabelling). ``n_max`` is the
smallest class count of the balanced split, so that every class can supply
its quota; for Fashion-MNIST it is 6000 (or ``train_size / C``). The test
split stays balanced.

:func:`shot_groups` splits the classes by training count, with thresholds
scaled to the head class: many-shot :math:`n_c > n_{\max}/5`, few-shot
:math:`n_c < n_{\max}/25`, medium-shot in between. (ImageNet-LT's fixed
> 100 / 20-100 / < 20 of 1280 are :math:`n_{\max}/12.8` and
:math:`n_{\max}/64`; a ten-class data set needs wider groups to leave more
than one class in each: at :math:`R = 100` the split above is 4 / 3 / 3
classes, at :math:`R = 10` 7 / 3 / 0.)
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.utils.data import TensorDataset

from grassmann_cls.errors import DataError

__all__ = ["long_tail_counts", "long_tail", "shot_groups", "group_accuracies", "MANY_SHOT", "FEW_SHOT"]

MANY_SHOT = 1 / 5
"""A class is many-shot when its training count exceeds ``MANY_SHOT * n_max``."""
FEW_SHOT = 1 / 25
"""A class is few-shot when its training count is below ``FEW_SHOT * n_max``."""


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    r"""The per-class counts :math:`\lfloor n_{\max} R^{-c/(C-1)} \rfloor`, head first.

    Parameters
    ----------
    n_max : int
        Count of the head class 0 (``>= 1``).
    num_classes : int
        Number of classes ``C`` (``>= 2``).
    ratio : float
        Imbalance ratio ``R >= 1`` (1: balanced).

    Returns
    -------
    list of int
        ``C`` counts, non-increasing, each at least 1.

    Examples
    --------
    >>> long_tail_counts(1000, 3, 100.0)
    [1000, 100, 10]
    """
    if isinstance(n_max, bool) or not isinstance(n_max, int) or n_max < 1:
        raise DataError(f"n_max must be an integer >= 1; got {n_max!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DataError(f"a long tail needs at least 2 classes; got {num_classes!r}")
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not math.isfinite(ratio) or ratio < 1:
        raise DataError(f"imbalance ratio must be a finite number >= 1; got {ratio!r}")
    # Note [long-tail rounding]
    # The profile is floored as in Cao et al.'s code; the 1e-9 guards exact
    # products (1000 * 100^(-1/2) = 100) against a float just below them.
    return [max(1, math.floor(n_max * ratio ** (-c / (num_classes - 1)) + 1e-9)) for c in range(num_classes)]


def long_tail(splits, ratio: float, *, seed: int = 0):
    """A copy of ``splits`` whose training split follows the long-tailed profile.

    Parameters
    ----------
    splits : DataSplits
        In-memory data (``TensorDataset`` splits) with every class present.
    ratio : float
        Imbalance ratio ``R >= 1``.
    seed : int
        Seed of which samples each class keeps.

    Returns
    -------
    DataSplits
        The training split subsampled per class (kept in its original order),
        the test split unchanged; the standardisation is kept.

    Raises
    ------
    DataError
        For images read from disk, a missing class, or a bad ``ratio``.
    """
    if not isinstance(splits.train, TensorDataset):
        raise DataError(f"a long-tailed training set needs in-memory data; {splits.name} is read from disk")
    x, y = splits.train.tensors
    available = torch.bincount(y, minlength=splits.num_classes)
    if int(available.min()) < 1:
        raise DataError(f"every class needs training samples for a long tail; {splits.name} lacks some")
    counts = long_tail_counts(int(available.min()), splits.num_classes, ratio)
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c, count in enumerate(counts):
        members = torch.nonzero(y == c).squeeze(1)
        keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
    index = torch.sort(torch.cat(keep)).values
    name = f"{splits.name}-LT{ratio:g}"
    return dataclasses.replace(splits, name=name, train=TensorDataset(x[index], y[index]))


def shot_groups(counts, *, many: float = MANY_SHOT, few: float = FEW_SHOT) -> dict[str, list[int]]:
    """The classes of each shot group, from the training counts.

    Parameters
    ----------
    counts : sequence of int
        Training samples per class, shape ``(C,)``.
    many, few : float
        Thresholds as fractions of the largest count: many-shot ``> many * n_max``,
        few-shot ``< few * n_max``, medium-shot otherwise.

    Returns
    -------
    dict
        ``{"many": [...], "medium": [...], "few": [...]}``, class indices in order.

    Examples
    --------
    >>> shot_groups([6000, 1290, 1000, 300, 60])
    {'many': [0, 1], 'medium': [2, 3], 'few': [4]}
    """
    counts = [int(c) for c in counts]
    if not counts or min(counts) < 0 or not 0 < few <= many < 1:
        raise DataError(f"shot groups need non-negative counts and 0 < few <= many < 1; got {counts}, {many}, {few}")
    n_max = max(counts)
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, n in enumerate(counts):
        groups["many" if n > many * n_max else "few" if n < few * n_max else "medium"].append(c)
    return groups


def group_accuracies(class_hits, class_totals, counts) -> dict[str, float | None]:
    """Top-1 (percent) over all test samples and over each shot group's test samples.

    Parameters
    ----------
    class_hits, class_totals : sequence of int
        Correct top-1 predictions and test samples per class, shape ``(C,)``.
    counts : sequence of int
        Training samples per class, shape ``(C,)``.

    Returns
    -------
    dict
        ``top1, many_top1, medium_top1, few_top1`` (``None`` for an empty group).
    """
    hits = torch.as_tensor(class_hits, dtype=torch.float64)
    totals = torch.as_tensor(class_totals, dtype=torch.float64)
    out: dict[str, float | None] = {"top1": 100.0 * float(hits.sum() / totals.sum())}
    for group, members in shot_groups(counts).items():
        total = float(totals[members].sum()) if members else 0.0
        out[f"{group}_top1"] = 100.0 * float(hits[members].sum()) / total if total else None
    return out
