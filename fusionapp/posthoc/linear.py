"""The wide path's linear model: scikit-learn's LogisticRegression (lbfgs), fitted per fold for
predictions on rows it has not seen, for each regularisation strength of a small grid; the one
whose held-out log loss is lowest is then fitted on every row, warm-started from its folds' mean.

Labels are class indices [rows] (a softmax model) or a 0/1 matrix [rows, labels] (multi-label: one
binary model per label). The result is always a Dense layer's (kernel [features, classes], bias).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from fusionapp.evaluation.calibration import (clearly_positive, is_multi_label, mean_log_loss, probabilities_of,
                                              row_log_losses)

FOLDS = 5
# scikit-learn's C (inverse regularisation strength) is chosen from these on the held-out log loss:
# the best value moves with the data (measured in docs/figures.md), and a grid of three fits each
# fold three times, from the previous value's solution.
C_GRID = (1.0, 4.0, 16.0)
# Past an edge the grid goes on in these steps, at most this many times each way.
GRID_STEP = 4.0
MAX_EXTENSIONS = 3
# A class (or label) these rows never show gets a logit this far below the others: it stays unlikely.
ABSENT_LOGIT = 30.0


@dataclass
class CrossFit:
    """The linear model on every row, and each row's logits from the fold fit that did not see it."""

    kernel: np.ndarray
    bias: np.ndarray
    held_out_logits: np.ndarray
    C: float = 4.0
    held_out_loss: dict | None = None  # each C tried -> its held-out log loss


def cross_fit(features, labels, num_classes: int, class_weight: str, grid, folds: np.ndarray,
              progress=None) -> CrossFit:
    """`folds` gives each row's fold (0 .. K-1): fold k's rows are predicted by a fit on the others,
    for each C of `grid`, and past whichever edge the best C sits at while the held-out loss falls
    clearly beyond it (`extend_grid`). The C chosen is refitted on every row. `progress(done, total)`
    is called after each fold of the grid."""
    grid = sorted(float(C) for C in grid)
    count = int(folds.max()) + 1
    held_out, fits = {}, {}
    for fold in range(count):
        start = None
        for C in grid:
            start = _fit_fold(features, labels, folds, fold, num_classes, class_weight, C, start, held_out, fits)
        if progress is not None:
            progress(fold + 1, count)

    def try_C(C: float, edge: float) -> np.ndarray:
        for fold in range(count):
            _fit_fold(features, labels, folds, fold, num_classes, class_weight, C, fits[edge][fold], held_out, fits)
        return held_out[C]

    losses, chosen = extend_grid(held_out, labels, grid, try_C)
    kernel, bias = fit_linear(features, labels, num_classes, class_weight, chosen,
                              start=tuple(np.mean([fit[i] for fit in fits[chosen]], axis=0) for i in (0, 1)))
    return CrossFit(kernel, bias, held_out[chosen], chosen, losses)


def extend_grid(logits: dict, labels, grid, try_C) -> tuple[dict, float]:
    """(each C tried -> its held-out log loss, the C chosen), from `logits` (C -> the rows' held-out
    logits, for each C of `grid`; extended in place). The grid's C of the lowest loss is chosen; while
    it is an edge of the grid, C goes on past it a factor of GRID_STEP at a time (at most
    MAX_EXTENSIONS times), `try_C(C, edge)` giving its held-out logits from the edge's fit, and is
    taken only where it beats the edge by more than one standard error of their rows' paired loss
    differences. Taken for any lower loss, the grid drifted to a near-unregularised fit for a gain
    the rows could not tell from noise, which cost the rare classes (docs/figures.md)."""
    losses = {C: held_out_loss(labels, logits[C]) for C in grid}
    accepted = dict(losses)
    chosen = best_C(accepted)
    for _ in range(MAX_EXTENSIONS * 2):
        up = chosen == max(accepted)
        if not (up or chosen == min(accepted)) or _extensions(chosen, grid) >= MAX_EXTENSIONS:
            break
        C = chosen * GRID_STEP if up else chosen / GRID_STEP
        logits[C] = try_C(C, chosen)
        losses[C] = held_out_loss(labels, logits[C])
        if not _clearly_better(labels, logits[C], logits[chosen]):
            break
        accepted[C], chosen = losses[C], C
    return dict(sorted(losses.items())), chosen


def _clearly_better(labels, logits, than) -> bool:
    """Whether `logits`' mean row log loss is below `than`'s by more than a standard error of the
    rows' differences."""
    multi_label = is_multi_label(labels)
    return clearly_positive(row_log_losses(labels, probabilities_of(than, multi_label), 1e-15)
                            - row_log_losses(labels, probabilities_of(logits, multi_label), 1e-15), errors=1.0)


def _fit_fold(features, labels, folds, fold: int, num_classes: int, class_weight: str, C: float, start,
              held_out: dict, fits: dict):
    """Fit C on every fold but `fold` (from `start`), predict `fold`'s rows into held_out[C]; the fit."""
    inside, outside = folds != fold, folds == fold
    fit = fit_linear(features[inside], labels[inside], num_classes, class_weight, C, start=start)
    held_out.setdefault(C, np.zeros((features.shape[0], num_classes), np.float64))[outside] = \
        features[outside] @ fit[0] + fit[1]
    fits.setdefault(C, []).append(fit)
    return fit


def _extensions(C: float, grid) -> int:
    """How many GRID_STEPs `C` lies beyond the grid's nearer edge."""
    ratio = C / max(grid) if C > max(grid) else min(grid) / C
    return int(round(np.log(max(ratio, 1.0)) / np.log(GRID_STEP)))


def best_C(losses: dict) -> float:
    """The C of the lowest held-out log loss (to 6 decimals; ties: the smaller C, the simpler model)."""
    return min(losses, key=lambda C: (round(losses[C], 6), C))


def held_out_loss(labels, logits) -> float:
    """The log loss of these logits (softmax, or a sigmoid per label for a 0/1 label matrix)."""
    return mean_log_loss(labels, probabilities_of(logits, is_multi_label(labels)))


def fold_numbers(labels, folds: int, seed: int) -> np.ndarray:
    """Each row's fold: stratified by class where every class has `folds` rows, else at random."""
    rows = len(labels)
    rng = np.random.default_rng(seed)
    if not is_multi_label(labels) and np.bincount(labels).min(initial=folds) >= folds:
        from sklearn.model_selection import StratifiedKFold

        numbers = np.zeros(rows, np.int64)
        splitter = StratifiedKFold(folds, shuffle=True, random_state=int(rng.integers(2**31)))
        for fold, (_, part) in enumerate(splitter.split(np.zeros(rows), labels)):
            numbers[part] = fold
        return numbers
    return rng.permutation(np.arange(rows) % folds)


def fit_linear(features, labels, num_classes: int, class_weight: str, C: float, start=None):
    """LogisticRegression on `features` -> (kernel [features, classes], bias [classes]); `start`, a
    (kernel, bias) the solver begins from."""
    if is_multi_label(labels):
        return _fit_per_label(features, labels, class_weight, C, start)
    present = np.unique(labels)
    kernel = np.zeros((features.shape[1], num_classes), np.float64)
    bias = np.full(num_classes, -ABSENT_LOGIT)
    if len(present) == 1:
        bias[present[0]] = 0.0
        return kernel, bias
    initial = None
    if start is not None:
        # scikit-learn keeps one log-odds column for two classes, else one per class present.
        initial = ((start[0][:, present[1]] - start[0][:, present[0]])[None, :],
                   np.array([start[1][present[1]] - start[1][present[0]]])) if len(present) == 2 else \
            (start[0][:, present].T, start[1][present])
    model = _logistic_regression(features, labels, class_weight, C, initial)
    if model.coef_.shape[0] == 1:
        # Two logits of +-half the log-odds give the same softmax as the log-odds.
        negative, positive = model.classes_
        kernel[:, positive], kernel[:, negative] = model.coef_[0] / 2, -model.coef_[0] / 2
        bias[positive], bias[negative] = model.intercept_[0] / 2, -model.intercept_[0] / 2
    else:
        kernel[:, model.classes_] = model.coef_.T
        bias[model.classes_] = model.intercept_
    return kernel, bias


def _fit_per_label(features, labels, class_weight: str, C: float, start=None):
    """One-vs-rest: a binary model per label; a label every row carries (or none does) gets a
    constant logit of +-ABSENT_LOGIT."""
    labels = np.asarray(labels) > 0.5
    kernel = np.zeros((features.shape[1], labels.shape[1]), np.float64)
    bias = np.zeros(labels.shape[1])
    for k in range(labels.shape[1]):
        if labels[:, k].all() or not labels[:, k].any():
            bias[k] = ABSENT_LOGIT if labels[:, k].all() else -ABSENT_LOGIT
            continue
        initial = None if start is None else (start[0][:, k][None, :], start[1][[k]])
        model = _logistic_regression(features, labels[:, k], class_weight, C, initial)
        kernel[:, k], bias[k] = model.coef_[0], model.intercept_[0]
    return kernel, bias


def _logistic_regression(features, labels, class_weight: str, C: float, initial=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, class_weight=None if class_weight == "none" else "balanced", max_iter=1000,
                               warm_start=initial is not None)
    if initial is not None:
        model.coef_, model.intercept_ = np.array(initial[0], np.float64), np.array(initial[1], np.float64)
    with warnings.catch_warnings():
        # A few hundred iterations leave it within a hair of the optimum; no user needs to hear it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    return model
