"""Calibrated probabilities: one temperature, fitted on the validation rows' logits (after the
decision offsets) by minimising their log loss, and the figures that say how well confidences
match accuracy (ECE, Brier).

Multi-label models (labels as a 0/1 matrix [rows, labels]) have a sigmoid per label: the log loss
is then the binary one over every (row, label), and the ECE and Brier score treat each (row,
label) probability as a forecast of whether the row carries the label.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
# log(T) is searched in [-3, 3]: T from 0.05 (sharpen 20x) to 20 (flatten 20x)
LOG_T_BOUNDS = (-3.0, 3.0)


def probabilities_of(logits, multi_label: bool):
    """What the model's logits mean: a softmax over classes, or a sigmoid per label."""
    from scipy.special import expit, softmax

    logits = np.asarray(logits, np.float64)
    return expit(logits) if multi_label else softmax(logits, axis=1)


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


def fit_temperature(y_true, logits) -> float:
    """The T > 0 for which softmax(logits / T) has the lowest log loss on these rows, against
    labels smoothed by 1 / (rows + 2) (Laplace's rule of succession): n rows all answered right
    show an accuracy of about (n + 1) / (n + 2), not 1, and without it a validation set the model
    gets entirely right would drive T to its lower bound and every probability to 0 or 1."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_expit, log_softmax

    y_true = np.asarray(y_true)
    logits = np.asarray(logits, np.float64)
    classes = logits.shape[1]
    smoothing = 1.0 / (len(y_true) + 2)
    if is_multi_label(y_true):
        targets = np.where(y_true > 0.5, 1.0 - smoothing, smoothing)

        def loss(log_t):
            scaled = logits / np.exp(log_t)
            return -(targets * log_expit(scaled) + (1 - targets) * log_expit(-scaled)).mean()
    else:
        targets = np.full(logits.shape, smoothing / max(classes - 1, 1))
        targets[np.arange(len(y_true)), y_true] = 1.0 - smoothing

        def loss(log_t):
            return -(targets * log_softmax(logits / np.exp(log_t), axis=1)).sum(axis=1).mean()

    result = minimize_scalar(loss, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


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


def calibrate(model, y_val, val_logits) -> dict:
    """Fit the temperature on the validation logits (offsets included), store it in the model's
    `head.temperature`, and return what config.json records."""
    val_logits = np.asarray(val_logits, np.float64)
    temperature = fit_temperature(y_val, val_logits)
    model.get_layer("head.temperature").set_weights([np.float32(temperature)])
    classes = val_logits.shape[1]
    multi_label = is_multi_label(y_val)
    before, after = probabilities_of(val_logits, multi_label), probabilities_of(val_logits / temperature, multi_label)
    return {"temperature": temperature,
            "val_ece": {"before": expected_calibration_error(y_val, before),
                        "after": expected_calibration_error(y_val, after)},
            "val_brier": {"before": brier_score(y_val, before, classes), "after": brier_score(y_val, after, classes)}}
