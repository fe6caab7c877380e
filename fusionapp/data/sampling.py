"""`--sample N`: a seeded sample of a table's rows, stratified by label where there is one, chosen
while streaming, so a quick try on a table of any size costs memory for N rows only.

Each row gets a key from its row number and the seed alone (so the sample is the same whatever
the chunking or the sharding of the files). Without a label, the sample is the N rows of the
smallest keys. With one, a first pass over the label column alone counts each class, each class
gets its share of N (largest remainders, and at least one row per class while N allows), and a
second pass keeps each class's rows of the smallest keys.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from fusionapp.errors import FusionError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def row_keys(row_numbers: np.ndarray, seed: int) -> np.ndarray:
    """A uniform 64-bit key per row (splitmix64 of the row number and the seed)."""
    with np.errstate(over="ignore"):
        x = np.asarray(row_numbers, dtype=np.uint64) + np.uint64(seed + 1) * _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sampled_rows(label_chunks, size: int, seed: int, stratify: bool) -> np.ndarray:
    """The sorted 1-based row numbers of the sample. `label_chunks()` yields (row numbers, labels or
    None) per chunk of the table, anew each time it is called."""
    if stratify:
        counts = Counter()
        for _, labels in label_chunks():
            counts.update(labels)
        quotas = class_quotas(counts, size)
    kept: dict = {}  # class (None without stratifying) -> (keys, row numbers) of its smallest keys
    for numbers, labels in label_chunks():
        keys = row_keys(numbers, seed)
        groups = {None: np.arange(len(numbers))} if not stratify else _groups(labels)
        for label, positions in groups.items():
            quota = quotas.get(label, 0) if stratify else size
            old_keys, old_rows = kept.get(label, (np.empty(0, np.uint64), np.empty(0, np.int64)))
            all_keys = np.concatenate([old_keys, keys[positions]])
            all_rows = np.concatenate([old_rows, np.asarray(numbers)[positions].astype(np.int64)])
            if len(all_keys) > quota:
                best = np.argpartition(all_keys, quota - 1)[:quota] if quota else np.empty(0, int)
                all_keys, all_rows = all_keys[best], all_rows[best]
            kept[label] = (all_keys, all_rows)
    rows = np.concatenate([rows for _, rows in kept.values()]) if kept else np.empty(0, np.int64)
    if not len(rows):
        raise FusionError("--sample: the table has no rows to sample")
    return np.sort(rows)


def class_quotas(counts: Counter, size: int) -> dict:
    """Each class's rows in a sample of `size`, in proportion to `counts` (largest remainders), with
    at least one row per class while `size` allows, and never more rows than a class has."""
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    labels = sorted(counts, key=lambda label: (-counts[label], label))
    floor = {label: 1 for label in labels[:size]}  # the largest classes first, when size < classes
    exact = {label: size * counts[label] / total for label in labels}
    quotas = {label: max(floor.get(label, 0), int(exact[label])) for label in labels}
    spare = size - sum(quotas.values())
    by_remainder = sorted(labels, key=lambda label: (-(exact[label] - int(exact[label])), label))
    for label in by_remainder:
        if spare <= 0:
            break
        if quotas[label] < counts[label]:
            quotas[label] += 1
            spare -= 1
    while spare < 0:  # the floors took more than the proportions left: the largest classes give back
        label = max((label for label in labels if quotas[label] > 1), key=lambda label: quotas[label])
        quotas[label] -= 1
        spare += 1
    return quotas


def _groups(labels) -> dict:
    """Label -> the positions holding it, in one sort (not one scan per class)."""
    values, inverse = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return dict(zip(values, np.split(order, np.cumsum(np.bincount(inverse, minlength=len(values)))[:-1])))
