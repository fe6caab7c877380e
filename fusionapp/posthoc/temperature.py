"""Calibrated probabilities: one temperature dividing the logits, fitted on held-out rows' logits
(after the decision offsets) by minimising their log loss against smoothed labels."""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from fusionapp.evaluation.calibration import brier_score, expected_calibration_error, is_multi_label, probabilities_of

# log(T) is searched in [-3, 3]: T from 0.05 (sharpen 20x) to 20 (flatten 20x)
LOG_T_BOUNDS = (-3.0, 3.0)


class CalibrationRecord(TypedDict):
    """config.json's "calibration"."""

    temperature: float  # T, dividing the logits
    val_ece: dict[str, float]  # the validation rows' expected calibration error, "before" and "after" T
    val_brier: dict[str, float]  # and their Brier score


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


def calibrate(model, y_val, val_logits) -> CalibrationRecord:
    """Fit the temperature on the validation logits (offsets included), store it in the model's
    `head.temperature`, and return what config.json records."""
    val_logits = np.asarray(val_logits, np.float64)
    temperature = fit_temperature(y_val, val_logits)
    model.set_temperature(temperature)
    classes = val_logits.shape[1]
    multi_label = is_multi_label(y_val)
    before, after = probabilities_of(val_logits, multi_label), probabilities_of(val_logits / temperature, multi_label)
    return {"temperature": temperature,
            "val_ece": {"before": expected_calibration_error(y_val, before),
                        "after": expected_calibration_error(y_val, after)},
            "val_brier": {"before": brier_score(y_val, before, classes), "after": brier_score(y_val, after, classes)}}
