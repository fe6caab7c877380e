"""Greedy ensemble selection with replacement (Caruana, Niculescu-Mizil, Crew and Ksikes, 2004) over
the trials' probabilities on the rows the search held out, then one temperature (and, multi-label,
the thresholds) for the chosen mixture.

The rows are ones no trial saw, neither to stop nor to fit what follows its network, so a trial
that overfitted its own validation rows gains nothing here. Log loss is the criterion: it is
smooth where a few hundred rows make F1 jump, and what calibration needs anyway.

Held-out rows are few (a third of the validation rows), and on a few hundred rows the trials' losses
differ by less than their noise: picking the lowest, or the addition that lowers it most, picks the
luckiest trial. So, as the paper's sorted initialisation does, the selection starts from every trial
the rows cannot tell from the best one (within `ERRORS` standard errors of the rows' paired loss
differences) in equal shares, and takes an addition only when its gain is as clear. On the trials
of two MVSA-Single searches (folds 1-3) that lifted test macro-F1 from 0.542 to 0.565 (figures.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.evaluation.calibration import clearly_positive, row_log_losses
from fusionapp.model.ensemble import EPSILON
from fusionapp.posthoc.decisions import tune_thresholds
from fusionapp.posthoc.temperature import fit_temperature

# Additions after the start: past this, selection with replacement only fine-tunes weights.
ROUNDS = 25
# How many standard errors of the paired row differences make one loss clearly lower than another.
ERRORS = 2.0
# Below this a gain is rounding (a member added to a mixture of itself).
FLOOR = 1e-6


@dataclass(frozen=True)
class Selection:
    weights: dict[int, float]  # position in the candidates -> its share of the mixture, summing to 1
    loss: float  # the mixture's log loss on the held-out rows, before the temperature
    temperature: float
    thresholds: np.ndarray | None  # multi-label: per label, tuned on the calibrated mixture


def mixture(probabilities: list[np.ndarray], weights: dict[int, float]) -> np.ndarray:
    return sum(share * probabilities[index] for index, share in weights.items())


def mixture_logits(mixed: np.ndarray, multi_label: bool) -> np.ndarray:
    """The logits whose probabilities are `mixed` (fusionapp.model.ensemble does the same)."""
    mixed = np.clip(mixed, EPSILON, 1 - EPSILON)
    return np.log(mixed) - np.log1p(-mixed) if multi_label else np.log(mixed)


def row_losses(y_true, probabilities) -> np.ndarray:
    """Each held-out row's log loss, clipped as the ensemble clips (the mean: mean_log_loss's)."""
    return row_log_losses(y_true, probabilities, EPSILON)


def greedy_selection(probabilities: list[np.ndarray], y_true, multi_label: bool, size: int,
                     rounds: int = ROUNDS) -> Selection:
    """`probabilities[i]`: candidate i's on the held-out rows. Start from the candidates whose loss
    is not clearly above the best one's (at most `size`, best first), in equal shares; then add
    (with replacement) the one that most lowers the mixture's loss, while that gain is clear and the
    mixture holds at most `size` distinct candidates."""
    if not probabilities:
        raise ValueError("no candidates to select from")
    losses = [row_losses(y_true, candidate) for candidate in probabilities]
    ranked = sorted(range(len(probabilities)), key=lambda i: (losses[i].mean(), i))
    start = [i for i in ranked if not clearly_positive(losses[i] - losses[ranked[0]], ERRORS, FLOOR)][:max(size, 1)]
    counts = {i: 1 for i in start}
    for _ in range(rounds):
        total = sum(counts.values())
        base = sum(count * probabilities[i] for i, count in counts.items())
        current = row_losses(y_true, base / total)
        allowed = range(len(probabilities)) if len(counts) < size else sorted(counts)
        gains = {i: current - row_losses(y_true, (base + probabilities[i]) / (total + 1))
                 for i in allowed}
        choice = max(gains, key=lambda i: (gains[i].mean(), -i))
        if not clearly_positive(gains[choice], ERRORS, FLOOR):
            break
        counts[choice] = counts.get(choice, 0) + 1
    total = sum(counts.values())
    weights = {i: count / total for i, count in sorted(counts.items())}
    mixed = mixture(probabilities, weights)
    logits = mixture_logits(mixed, multi_label)
    temperature = fit_temperature(y_true, logits)
    thresholds = None
    if multi_label:
        thresholds = tune_thresholds(y_true, 1 / (1 + np.exp(-logits / temperature)))
    return Selection(weights, float(row_losses(y_true, mixed).mean()), temperature, thresholds)
