"""How well probabilities match what happens: log loss, ECE and the reliability bins behind it,
Brier score; and the NumPy reading of logits that fitting after the network searches over.

Multi-label models (labels as a 0/1 matrix [rows, labels]) have a sigmoid per label: the log loss
is then the binary one over every (row, label), and the ECE and Brier score treat each (row,
label) probability as a forecast of whether the row carries the label.
"""

from __future__ import annotations

import numpy as np

from fusionapp.model.head import probabilities

ECE_BINS = 15


def probabilities_of(logits, multi_label: bool) -> np.ndarray:
    """The model's own reading of its logits (fusionapp.model.head.probabilities), in float64 NumPy."""
    return np.asarray(probabilities(np.asarray(logits, np.float64), multi_label), np.float64)


def is_multi_label(y_true) -> bool:
    """Labels as a 0/1 matrix [rows, labels] rather than class indices [rows]."""
    return np.ndim(y_true) == 2


def mean_log_loss(y_true, probabilities) -> float:
    """scikit-learn's log loss of class probabilities; for a multi-label 0/1 matrix, the binary log
    loss over every (row, label)."""
    from sklearn.metrics import log_loss

    if is_multi_label(y_true):
        return float(log_loss(np.ravel(y_true) > 0.5, np.ravel(probabilities), labels=[False, True]))
    return float(log_loss(y_true, probabilities, labels=list(range(np.shape(probabilities)[1]))))


def row_log_losses(y_true, probabilities, eps: float) -> np.ndarray:
    """Each row's log loss, the probabilities clipped `eps` from 0 and 1 (a 0/1 label matrix: the mean
    over its labels); their mean is mean_log_loss's."""
    probabilities = np.clip(probabilities, eps, 1 - eps)
    if is_multi_label(y_true):
        positive = np.asarray(y_true) > 0.5
        return -np.mean(np.where(positive, np.log(probabilities), np.log1p(-probabilities)), axis=1)
    return -np.log(probabilities[np.arange(len(y_true)), np.asarray(y_true)])


def clearly_positive(differences: np.ndarray, errors: float, floor: float = 0.0) -> bool:
    """Whether paired row differences (of log losses, say) are above zero by more than `errors`
    standard errors, and by more than `floor`: a gain the rows can tell from noise."""
    spread = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else 0.0
    return differences.mean() > max(errors * spread, floor)


def expected_calibration_error(y_true, probabilities, bins: int = ECE_BINS) -> float:
    """Sum over equal-width confidence bins of (rows in bin / rows) x |accuracy - mean confidence|,
    the confidence of a row being its top probability (scikit-learn has no multiclass ECE)."""
    found = reliability_bins(y_true, probabilities, bins)
    rows = sum(b["rows"] for b in found)
    return float(sum(b["rows"] / rows * abs(b["accuracy"] - b["confidence"]) for b in found))


def reliability_bins(y_true, probabilities, bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin: its range, rows, accuracy and mean confidence (the reliability diagram,
    and what the ECE sums). Multi-label: each (row, label) is a forecast, its confidence the
    label's probability and its "accuracy" the share of those rows that carry the label."""
    probabilities = np.asarray(probabilities, np.float64)
    if is_multi_label(y_true):
        confidence, correct = probabilities.ravel(), np.asarray(y_true).ravel() > 0.5
    else:
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    # Bin b holds confidences in (b/bins, (b+1)/bins], the first bin 0 too.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return [{"low": b / bins, "high": (b + 1) / bins, "rows": int((index == b).sum()),
             "accuracy": float(correct[index == b].mean()), "confidence": float(confidence[index == b].mean())}
            for b in range(bins) if (index == b).any()]


def brier_score(y_true, probabilities, num_classes: int) -> float:
    """Mean over rows of the summed squared difference between probabilities and the one-hot label;
    multi-label: the mean over labels of each label's binary Brier score."""
    from sklearn.metrics import brier_score_loss

    probabilities = np.asarray(probabilities, np.float64)
    if is_multi_label(y_true):
        y_true = np.asarray(y_true) > 0.5
        return float(np.mean([brier_score_loss(y_true[:, k], probabilities[:, k], labels=[False, True])
                              for k in range(num_classes)]))
    # float32 softmax rows (or rounded CSV columns) sum to 1 only nearly; scikit-learn warns about it.
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return float(brier_score_loss(np.asarray(y_true), probabilities, labels=list(range(num_classes)),
                                  scale_by_half=False))


