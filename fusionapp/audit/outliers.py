"""Rows far from the rest: in the audit's embedding, far from every class's centre; in its image
thumbnails, far from the column's. A row is flagged when its distance is at least RATIO times the
median row's and it is among the farthest SHARE of rows, so a data set without outliers shows few."""

from __future__ import annotations

import numpy as np

RATIO = 2.5
SHARE = 0.01


def class_distances(embedding: np.ndarray, classes: np.ndarray, count: int) -> np.ndarray:
    """Each row's distance to the nearest centre of the classes (`classes`: a class index per row,
    -1 for a row without one, which does not move any centre); NaN where no class has rows."""
    centres = np.zeros((count, embedding.shape[1]), np.float64)
    labelled = classes >= 0
    np.add.at(centres, classes[labelled], embedding[labelled])
    sizes = np.bincount(classes[labelled], minlength=count)
    present = sizes > 0
    if not present.any():
        return np.full(len(embedding), np.nan)
    centres = centres[present] / sizes[present, None]
    nearest = np.full(len(embedding), np.inf)
    for block in _blocks(np.arange(len(embedding))):
        # Classes one at a time: [rows, classes, width] would not fit a big table.
        for centre in centres:
            nearest[block] = np.minimum(nearest[block], np.linalg.norm(embedding[block] - centre, axis=1))
    return nearest


def column_distances(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Each present row's distance to the column's mean, in units of the column's spread; NaN elsewhere.
    A block of rows at a time: a million thumbnails in float32 would be gigabytes at once."""
    distances = np.full(len(values), np.nan)
    rows = np.flatnonzero(present)
    if len(rows) < 2:
        return distances
    total, squares = np.zeros(values.shape[1]), np.zeros(values.shape[1])
    for block in _blocks(rows):
        kept = values[block].astype(np.float64)
        total += kept.sum(axis=0)
        squares += (kept ** 2).sum(axis=0)
    mean = total / len(rows)
    spread = np.sqrt(np.maximum(squares / len(rows) - mean ** 2, 0)) + 1e-3
    for block in _blocks(rows):
        distances[block] = np.linalg.norm((values[block].astype(np.float64) - mean) / spread, axis=1)
    return distances


def _blocks(rows: np.ndarray, size: int = 65_536):
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def far_rows(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which rows are flagged, each row's distance over the median's); NaN distances are neither."""
    known = np.isfinite(distances)
    ratio = np.full(len(distances), np.nan)
    if known.sum() < 10:
        return np.zeros(len(distances), bool), ratio
    median = max(float(np.median(distances[known])), 1e-9)
    ratio[known] = distances[known] / median
    cut = np.quantile(ratio[known], 1 - SHARE)
    return known & (ratio >= RATIO) & (ratio >= cut), ratio
