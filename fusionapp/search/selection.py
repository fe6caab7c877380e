"""Greedy ensemble selection with replacement (Caruana, Niculescu-Mizil, Crew and Ksikes, 2004) over
the trials' probabilities on the rows the search held out, then one temperature (and, multi-label,
the thresholds) for the chosen mixture.

The rows are ones no trial saw, neither to stop nor to fit what follows its network, so a trial
that overfitted its own validation rows gains nothing here. Log loss is the criterion: it is
smooth where a few hundred rows make F1 jump, and what calibration needs anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionapp.evaluation.calibration import mean_log_loss
from fusionapp.model.ensemble import EPSILON
from fusionapp.posthoc.decisions import tune_thresholds
from fusionapp.posthoc.temperature import fit_temperature

# Additions after the first model: past this, selection with replacement only fine-tunes weights.
ROUNDS = 25


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


def greedy_selection(probabilities: list[np.ndarray], y_true, multi_label: bool, size: int,
                     rounds: int = ROUNDS) -> Selection:
    """`probabilities[i]`: candidate i's on the held-out rows. Start from the best candidate, then
    add (with replacement) the one that most lowers the mixture's log loss, while one does and the
    mixture holds at most `size` distinct candidates."""
    if not probabilities:
        raise ValueError("no candidates to select from")

    def loss(mixed):
        return mean_log_loss(y_true, np.clip(mixed, EPSILON, 1 - EPSILON))

    counts = {}
    best = min(range(len(probabilities)), key=lambda i: loss(probabilities[i]))
    counts[best] = 1
    current = loss(probabilities[best])
    for _ in range(rounds):
        total = sum(counts.values())
        base = sum(count * probabilities[i] for i, count in counts.items())
        allowed = range(len(probabilities)) if len(counts) < size else sorted(counts)
        scores = {i: loss((base + probabilities[i]) / (total + 1)) for i in allowed}
        choice = min(scores, key=lambda i: (scores[i], i))
        if scores[choice] >= current - 1e-6:
            break
        counts[choice] = counts.get(choice, 0) + 1
        current = scores[choice]
    total = sum(counts.values())
    weights = {i: count / total for i, count in sorted(counts.items())}
    logits = mixture_logits(mixture(probabilities, weights), multi_label)
    temperature = fit_temperature(y_true, logits)
    thresholds = None
    if multi_label:
        thresholds = tune_thresholds(y_true, 1 / (1 + np.exp(-logits / temperature)))
    return Selection(weights, current, temperature, thresholds)
