"""The audit's out-of-fold probabilities: one logistic regression per fold, in two rounds.

The second round's fits leave out the rows the first round's confident learning flags, as cleanlab's
users clean and refit: where noise is a large share of a small class, a model that learnt from it
takes the class's foreign rows for its own, and the first round misses them. On fashion_products
with 10% of labels changed, the second round lifts the flags' F1 from 0.89 to 0.93 (docs/figures.md).
Every row keeps probabilities from folds that did not learn from it.

C is fixed: the audit needs each row's probabilities from a model that did not see it, and a grid of
C would multiply the fits for little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.audit.confident import audit_labels, audit_multi_label
from fusionapp.evaluation.calibration import probabilities_of
from fusionapp.posthoc.linear import fit_linear, fold_numbers

# The linear model's inverse regularisation: the middle of the wide path's grid.
AUDIT_C = 4.0
ROUNDS = 2


@dataclass(frozen=True)
class CrossFit:
    """The last round's fold models' mean (for rows outside the sample) and each sampled row's
    held-out logits."""

    kernel: np.ndarray
    bias: np.ndarray
    held_out_logits: np.ndarray
    left_out: int  # rows the first round flagged, which the last round's fits did not learn from
    fold_of: np.ndarray | None = None  # each sampled row's fold
    learnt_from: np.ndarray | None = None  # the sampled rows the last round's fits learnt from


def cross_fitted(features, targets: np.ndarray, classes: int, folds: int, seed: int) -> CrossFit:
    """Out-of-fold logits of `targets` (class indices, or a 0/1 matrix for multi-label) from
    `features` [rows, features]."""
    fold_of = fold_numbers(targets, folds, seed)
    learnt_from = np.ones(len(targets), bool)
    for round_number in range(ROUNDS):
        fit = _one_round(features, targets, classes, fold_of, learnt_from)
        if round_number + 1 < ROUNDS:
            learnt_from = ~_flagged(targets, probabilities_of(fit.held_out_logits, targets.ndim == 2))
    return CrossFit(fit.kernel, fit.bias, fit.held_out_logits, int((~learnt_from).sum()), fold_of, learnt_from)


def _one_round(features, targets, classes: int, fold_of: np.ndarray, learnt_from: np.ndarray) -> CrossFit:
    held_out = np.zeros((len(targets), classes))
    kernels, biases = [], []
    for fold in range(int(fold_of.max()) + 1):
        inside = (fold_of != fold) & learnt_from
        kernel, bias = fit_linear(features[inside], targets[inside], classes, "none", AUDIT_C)
        held_out[fold_of == fold] = features[fold_of == fold] @ kernel + bias
        kernels.append(kernel)
        biases.append(bias)
    return CrossFit(np.mean(kernels, axis=0), np.mean(biases, axis=0), held_out, int((~learnt_from).sum()))


def _flagged(targets: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    if targets.ndim == 1:
        return audit_labels(targets, probabilities).flagged
    return np.any([audit.flagged for audit in audit_multi_label(targets, probabilities)], axis=0)
