r"""Detection metrics for OOD scores (higher score = in-distribution).

=============  ====================================================================
key            meaning
=============  ====================================================================
``auroc``      area under the ROC curve, in-distribution positive
``aupr_in``    average precision, in-distribution positive
``aupr_out``   average precision, OOD positive (scores negated)
``fpr95``      fraction of OOD inputs scored at or above the threshold that keeps
               95 % of the in-distribution inputs
=============  ====================================================================
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ..errors import ManifoldTypeError, NonFiniteError, ShapeError

__all__ = ["ood_metrics", "METRICS"]

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
"""The keys of :func:`ood_metrics`, in order."""

TPR_LEVEL = 0.95


def _scores(name: str, value) -> np.ndarray:
    """``value`` as a 1-d, non-empty, finite float64 array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ManifoldTypeError(f"{name} must hold real numbers; got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ShapeError(f"{name} must be a non-empty 1-d array of scores; got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise NonFiniteError(f"{name} must be finite; got {bad} NaN or Inf of {array.size}")
    return array.astype(np.float64)


def ood_metrics(id_scores, ood_scores) -> dict[str, float]:
    r"""AUROC, AUPR (in and out) and FPR at 95 % TPR of a score's separation of ID from OOD inputs.

    In-distribution inputs are the positive class for ``auroc``, ``aupr_in``
    and ``fpr95``; ``aupr_out`` takes the OOD inputs as positive with negated
    scores. ``fpr95`` is the false-positive rate on the OOD inputs at 95 %
    true-positive rate on the in-distribution inputs (Liang et al., 2018;
    OpenOOD v1): with :math:`t` the largest threshold that keeps 95 % of the
    ID scores,

    .. math:: t = \max\{\tau : |\{i : s^{\mathrm{ID}}_i \ge \tau\}| \ge 0.95\, N_{\mathrm{ID}}\},
              \qquad \mathrm{FPR95} = \frac{|\{j : s^{\mathrm{OOD}}_j \ge t\}|}{N_{\mathrm{OOD}}}.

    Ties count against the score (OOD inputs tied with the threshold are false
    positives). AUROC and average precision are scikit-learn's
    (``roc_auc_score``, ``average_precision_score``), FPR95 is read off its
    ``roc_curve``.

    Parameters
    ----------
    id_scores : array-like or torch.Tensor
        Scores of the in-distribution inputs, shape ``(N_ID,)``, finite.
    ood_scores : array-like or torch.Tensor
        Scores of the OOD inputs, shape ``(N_OOD,)``, finite.

    Returns
    -------
    dict
        ``{"auroc", "aupr_in", "aupr_out", "fpr95"}`` as floats in [0, 1].

    Examples
    --------
    >>> ood_metrics([3.0, 4.0], [1.0, 2.0])
    {'auroc': 1.0, 'aupr_in': 1.0, 'aupr_out': 1.0, 'fpr95': 0.0}
    """
    id_scores = _scores("id_scores", id_scores)
    ood_scores = _scores("ood_scores", ood_scores)
    scores = np.concatenate([id_scores, ood_scores])
    is_id = np.concatenate([np.ones(id_scores.size, dtype=np.int64), np.zeros(ood_scores.size, dtype=np.int64)])
    # Note [FPR95 convention]
    # OpenOOD v1.5 takes OOD as the positive class in its fpr@95 (the rate of
    # ID inputs flagged at 95 % recall of OOD inputs), which differs from the
    # ODIN / OpenOOD v1 definition used here. drop_intermediate=False keeps
    # every threshold, so the first point with TPR >= 0.95 is the exact t.
    fpr, tpr, _ = roc_curve(is_id, scores, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(is_id, scores)),
        "aupr_in": float(average_precision_score(is_id, scores)),
        "aupr_out": float(average_precision_score(1 - is_id, -scores)),
        "fpr95": float(fpr[np.argmax(tpr >= TPR_LEVEL)]),
    }
