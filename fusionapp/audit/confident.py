"""Wrong labels by confident learning (Northcutt, Jiang and Chuang, "Confident learning: estimating
uncertainty in dataset labels", JAIR 2021), on out-of-fold probabilities.

A row is counted as confidently of class j when its probability of j reaches class j's threshold
(the mean probability of j over the rows labelled j); of several such classes, the likeliest. The
counts by (given label, confident class) are the confident joint; calibrated to the given labels'
counts, its off-diagonal cell (i, j) estimates how many rows labelled i are truly j. Those many rows
labelled i, the ones whose probability of j most exceeds that of i, are flagged ("prune by noise
rate"), and never a row whose given label is the likeliest.

Multi-label sets are audited one label at a time, each as a two-class problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Probabilities within this of a threshold count as reaching it (float rounding).
EPSILON = 1e-6


@dataclass(frozen=True)
class LabelAudit:
    """The confident-learning verdicts on single-label rows."""

    flagged: np.ndarray  # bool [rows]: the row's label is likely wrong
    quality: np.ndarray  # [rows] self-confidence: the probability of the given label (low = suspect)
    margin: np.ndarray  # [rows] normalised margin: (p(given) - max p(other) + 1) / 2
    suggested: np.ndarray  # [rows] the likeliest class
    thresholds: np.ndarray  # [classes]
    joint: np.ndarray  # [given, true] calibrated confident joint (counts)
    noise: np.ndarray  # [given, true] P(given label | true class), columns summing to 1


def confident_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Each class's mean probability over the rows labelled with it (1 for a class no row has, so
    that no row counts as confidently of it)."""
    classes = probs.shape[1]
    sums = np.zeros(classes)
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    counts = np.bincount(labels, minlength=classes)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_joint(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[given, confident class] counts, calibrated: each row sums to its label's count of rows, the
    whole to the number of rows, in whole numbers."""
    classes = probs.shape[1]
    above = probs >= thresholds - EPSILON
    confident = above.any(axis=1)
    guess = np.where(above.sum(axis=1) > 1, probs.argmax(axis=1), above.argmax(axis=1))
    joint = np.zeros((classes, classes))
    np.add.at(joint, (labels[confident], guess[confident]), 1)
    # Every class keeps at least one confidently right row, so no row of the joint is empty.
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    counts = np.bincount(labels, minlength=classes)
    calibrated = joint / joint.sum(axis=1, keepdims=True) * counts[:, None]
    calibrated = calibrated / max(calibrated.sum(), 1e-12) * counts.sum()
    return np.stack([_whole_numbers(row) for row in calibrated])


def noise_matrix(joint: np.ndarray) -> np.ndarray:
    """P(given label i | true class j) from the confident joint [given, true]: each column over its
    sum (a class no row truly has: the identity's column)."""
    totals = joint.sum(axis=0, keepdims=True)
    identity = np.eye(len(joint))
    return np.where(totals > 0, joint / np.maximum(totals, 1e-12), identity)


def audit_labels(labels: np.ndarray, probs: np.ndarray) -> LabelAudit:
    """Confident learning on class indices `labels` [rows] and out-of-fold `probs` [rows, classes]."""
    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probs, np.float64)
    rows = np.arange(len(labels))
    thresholds = confident_thresholds(labels, probs)
    joint = confident_joint(labels, probs, thresholds)
    flagged = np.zeros(len(labels), bool)
    for given in range(probs.shape[1]):
        members = rows[labels == given]
        # At least one row of each class is kept: its off-diagonal counts give way first.
        room = max(len(members) - 1, 0)
        for true in np.argsort(-joint[given]):
            count = int(min(joint[given, true], room)) if true != given else 0
            if count <= 0:
                continue
            margin = probs[members, true] - probs[members, given]
            flagged[members[np.argsort(-margin, kind="stable")[:count]]] = True
            room -= count
    given_p = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1) if probs.shape[1] > 1 else np.zeros(len(labels))
    # A row whose given label is (within rounding) the likeliest is never flagged.
    flagged &= given_p + EPSILON < best_other
    return LabelAudit(flagged, given_p, (given_p - best_other + 1) / 2, probs.argmax(axis=1), thresholds, joint,
                      noise_matrix(joint))


def audit_multi_label(targets: np.ndarray, probs: np.ndarray) -> list[LabelAudit]:
    """One two-class audit per label of a 0/1 matrix `targets` [rows, labels] with sigmoid `probs`."""
    audits = []
    for label in range(targets.shape[1]):
        p = np.clip(probs[:, label], 0.0, 1.0)
        audits.append(audit_labels(targets[:, label].astype(np.int64), np.stack([1 - p, p], axis=1)))
    return audits


def _whole_numbers(values: np.ndarray) -> np.ndarray:
    """`values` rounded to whole numbers whose sum is the sum's rounding (largest remainders first)."""
    floors = np.floor(values)
    short = int(round(values.sum() - floors.sum()))
    order = np.argsort(-(values - floors), kind="stable")
    floors[order[:short]] += 1
    return floors.astype(np.int64)
