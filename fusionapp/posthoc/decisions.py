"""Decisions tuned on held-out rows: per-class offsets added to the logits for the best macro-F1
(single-label), or a probability threshold per label for its best F1 (multi-label).

With imbalanced classes a model trained on plain cross-entropy rarely predicts the rare ones;
shifting each class's logit by a constant (a prior correction) fixes that after training, at no
cost to the ranking the model learned.
"""

from __future__ import annotations

import numpy as np

GRID = np.round(np.arange(-2.0, 2.01, 0.1), 2)


def tune_offsets(y_true, logits, rounds: int = 2) -> np.ndarray:
    """Coordinate ascent over per-class logit offsets (the first class stays at 0); ties keep
    smaller shifts. `logits` are the model's, before any offset."""
    from sklearn.metrics import f1_score

    y_true = np.asarray(y_true)
    logits = np.asarray(logits, dtype=np.float64)
    labels = list(range(logits.shape[1]))
    offsets = np.zeros(logits.shape[1])

    def score(candidate):
        return f1_score(y_true, (logits + candidate).argmax(axis=1), labels=labels, average="macro", zero_division=0)

    best = score(offsets)
    for _ in range(rounds):
        for k in labels[1:]:
            for value in sorted(GRID, key=abs):
                candidate = offsets.copy()
                candidate[k] = value
                candidate_score = score(candidate)
                if candidate_score > best + 1e-9:
                    best, offsets = candidate_score, candidate
    return offsets


# Candidate thresholds of a multi-label model, nearest 0.5 first: on a tie in F1, the least shift wins.
THRESHOLDS = np.array(sorted(np.round(np.arange(0.05, 0.951, 0.01), 2), key=lambda t: (abs(t - 0.5), t)))


def tune_thresholds(y_true, probabilities) -> np.ndarray:
    """Per label, the threshold on its probability with the best F1 on these rows (a row is given
    the label when its probability reaches the threshold); 0.5 for a label these rows never carry."""
    y_true = np.asarray(y_true) > 0.5
    probabilities = np.asarray(probabilities, dtype=np.float64)
    thresholds = np.full(probabilities.shape[1], 0.5)
    for k in range(probabilities.shape[1]):
        positives = y_true[:, k]
        if not positives.any():
            continue
        chosen = probabilities[:, k][None, :] >= THRESHOLDS[:, None]  # [thresholds, rows]
        true_positives = (chosen & positives).sum(axis=1)
        f1 = 2 * true_positives / (chosen.sum(axis=1) + positives.sum())
        thresholds[k] = THRESHOLDS[int(np.argmax(f1))]
    return thresholds
