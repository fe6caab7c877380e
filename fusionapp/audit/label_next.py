"""Which unlabelled rows to label next: the least certain, spread over the data. The POOL x N rows of
the smallest margin between the model's two likeliest answers are clustered by k-means into N groups
of their embeddings, and each group gives its least certain row, so the N rows are not N copies of
one confusing product."""

from __future__ import annotations

import numpy as np

POOL = 10


def margins(probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
    """How sure the model is of each row: the gap between its two likeliest classes (multi-label: the
    smallest distance of a label's probability from 0.5, doubled)."""
    if multi_label:
        return 2 * np.abs(probabilities - 0.5).min(axis=1)
    if probabilities.shape[1] < 2:
        return np.ones(len(probabilities))
    top = np.sort(probabilities, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def rows_to_label(margin: np.ndarray, embedding: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of `count` rows, the first to label first (cluster by cluster, least certain first)."""
    order = np.argsort(margin, kind="stable")
    if count >= len(margin):
        return order
    pool = order[:min(len(margin), POOL * count)]
    if count == 1 or len(pool) <= count:
        return pool[:count]
    from sklearn.cluster import KMeans, MiniBatchKMeans

    kind = KMeans if len(pool) <= 20_000 else MiniBatchKMeans
    clusters = kind(n_clusters=count, random_state=seed, n_init=1).fit_predict(embedding[pool])
    chosen = []
    for cluster in range(count):
        members = pool[clusters == cluster]
        if len(members):
            chosen.append(members[np.argmin(margin[members])])
    chosen = np.array(sorted(chosen, key=lambda row: margin[row]), np.int64)
    if len(chosen) < count:  # empty clusters: the least certain rows not yet chosen fill in
        rest = pool[~np.isin(pool, chosen)]
        chosen = np.concatenate([chosen, rest[:count - len(chosen)]])
    return chosen
