"""Classification metrics as the dynamic-FER field reports them (docs/DESIGN.md, "Metrics").

- WAR, weighted average recall: the overall accuracy, correct / all samples.
- UAR, unweighted average recall: the mean over classes of each class's recall, so that rare
  classes (DFEW's disgust: 1-2 % of the clips) count as much as frequent ones.
- Per-class accuracy: the recall of each class, the columns "Accuracy of 7 emotion classes" of the
  paper's Tables 3, 5 and 7 (and the diagonal of the row-normalised Figs. 5 and 6).
- Confusion matrix: rows are the true class, columns the predicted class.
- Per-group breakdown (``report(..., groups=...)``), e.g. FERV39k's scenes for the paper's Table 6.

Everything is computed on the host with numpy from integer labels and predictions; accuracies are
fractions in [0, 1] (tables multiply by 100). Class order is dferjax.labels'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


def from_logits(logits: npt.ArrayLike) -> np.ndarray:
    """Predicted classes (int64) from scores of shape (..., K): the argmax over the last axis."""
    scores = np.asarray(logits)
    if scores.ndim < 1 or scores.shape[-1] == 0:
        raise ValueError(f"logits must have a non-empty class axis last, got shape {scores.shape}")
    return np.argmax(scores, axis=-1).astype(np.int64)


def _as_class_indices(values: npt.ArrayLike, what: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of class indices, got shape {array.shape}")
    if array.size == 0:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got dtype {array.dtype} "
                         "(pass argmax predictions, e.g. metrics.from_logits(logits))")
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        where = np.flatnonzero(bad)
        raise ValueError(f"{what} out of range [0, {num_classes}): {int(where.size)} value(s), first "
                         f"{int(array[where[0]])} at position {int(where[0])}; check that num_classes "
                         "matches the dataset (7 basic classes, 11 for MAFW)")
    return array.astype(np.int64)


def confusion_matrix(labels: npt.ArrayLike, predictions: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Counts (int64, K x K): entry [t, p] is the number of samples of true class t predicted as p."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    y = _as_class_indices(labels, "labels", num_classes)
    p = _as_class_indices(predictions, "predictions", num_classes)
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {y.size} vs {p.size}")
    counts = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _check_confusion(confusion: npt.ArrayLike) -> np.ndarray:
    matrix = np.asarray(confusion)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix must be square (K x K), got shape {matrix.shape}")
    return matrix


def war(confusion: npt.ArrayLike) -> float:
    """Weighted average recall = overall accuracy: trace / total. NaN for an empty matrix."""
    matrix = _check_confusion(confusion)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total > 0 else math.nan


def per_class_accuracy(confusion: npt.ArrayLike) -> np.ndarray:
    """Recall of each class (float, K): diagonal / row sum; NaN for a class absent from the labels."""
    matrix = _check_confusion(confusion).astype(np.float64)
    support = matrix.sum(axis=1)
    recall = np.full(matrix.shape[0], np.nan)
    present = support > 0
    recall[present] = np.diag(matrix)[present] / support[present]
    return recall


def uar(confusion: npt.ArrayLike) -> float:
    """Unweighted average recall: the mean of per-class recall over the classes PRESENT in the labels.

    A class with no true samples (row sum 0) has no recall and is excluded from the mean, not counted
    as 0 (sklearn's balanced_accuracy_score does the same, with a warning). This matters for small
    splits and per-scene breakdowns, where a class may be missing. NaN if no class is present.
    """
    recall = per_class_accuracy(confusion)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else math.nan


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _report_from_confusion(confusion: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    recall = per_class_accuracy(confusion)
    return {
        "num_samples": int(confusion.sum()),
        "war": _none_if_nan(war(confusion)),
        "uar": _none_if_nan(uar(confusion)),
        "per_class": {name: _none_if_nan(float(r)) for name, r in zip(names, recall)},
        "confusion": confusion.astype(np.int64).tolist(),
        "class_names": list(names),
    }


def report(labels: npt.ArrayLike, predictions: npt.ArrayLike, class_names: Sequence[str],
           groups: Sequence[str | None] | None = None) -> dict[str, Any]:
    """All metrics of one evaluation as a JSON-serialisable dict.

    Keys: ``num_samples``, ``war``, ``uar`` (fractions; None when there are no samples),
    ``per_class`` ({class name: recall, or None for a class absent from the labels}),
    ``confusion`` (K x K nested lists of int, rows true, columns predicted) and ``class_names``.

    ``groups`` gives one group name per sample (e.g. FERV39k's scene); when it is given and at least
    one name is non-empty, ``groups`` maps each group name (sorted) to the same dict for that group's
    samples (without nested groups). Samples whose group is empty or None count in the overall
    numbers only.
    """
    names = [str(n) for n in class_names]
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, got {names}")
    confusion = confusion_matrix(labels, predictions, len(names))
    result = _report_from_confusion(confusion, names)
    if groups is None:
        return result
    group_of = ["" if g is None else str(g) for g in groups]
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if len(group_of) != y.size:
        raise ValueError(f"groups must give one name per sample: {len(group_of)} groups for {y.size} samples")
    group_array = np.asarray(group_of, dtype=object)
    breakdown = {}
    for group in sorted({g for g in group_of if g}):
        mask = group_array == group
        breakdown[group] = _report_from_confusion(confusion_matrix(y[mask], p[mask], len(names)), names)
    if breakdown:
        result["groups"] = breakdown
    return result
