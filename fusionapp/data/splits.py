"""Choose training and validation rows: the split column when there is one, else a seeded,
stratified hold-out."""

from __future__ import annotations

from collections import Counter

import numpy as np

from fusionapp.data.examples import SPLITS, Examples
from fusionapp.errors import FusionError


def training_rows(examples: Examples) -> Examples:
    """The rows `train` may learn or validate on: everything but the `test` split."""
    if examples.splits is None:
        return examples
    unknown = sorted(set(examples.splits) - set(SPLITS))
    if unknown:
        raise FusionError(f"{examples.source}: unknown split value '{unknown[0]}' in the split column "
                          f"(expected one of: {', '.join(SPLITS)})")
    keep = [i for i, split in enumerate(examples.splits) if split in ("train", "val")]
    if not any(split == "train" for split in examples.splits):
        raise FusionError(f"{examples.source}: the split column has no 'train' rows")
    return examples.subset(keep)


def split_train_val(examples: Examples, val_split: float, seed: int,
                    multi_label: bool = False) -> tuple[Examples, Examples]:
    """Split into (train, val): by the split column's `val` rows, or a stratified hold-out (for label
    sets, a seeded random one: sets have no class to stratify by)."""
    if examples.splits is not None and "val" in examples.splits:
        train = [i for i, split in enumerate(examples.splits) if split == "train"]
        val = [i for i, split in enumerate(examples.splits) if split == "val"]
        return examples.subset(train), examples.subset(val)
    if not 0.0 < val_split < 1.0:
        raise FusionError(f"--val-split must be between 0 and 1 (got {val_split})")
    if multi_label:
        n_val = int(round(len(examples) * val_split))
        if n_val < 1 or n_val > len(examples) - 2:
            raise FusionError(f"{examples.source}: {len(examples)} rows are too few to hold out a validation set")
        order = np.random.default_rng(seed).permutation(len(examples))
        return examples.subset(np.sort(order[n_val:])), examples.subset(np.sort(order[:n_val]))
    counts = Counter(examples.labels)
    rare = [label for label, count in counts.items() if count < 2]
    if rare:
        raise FusionError(f"{examples.source}: label '{rare[0]}' has only one usable example; a stratified "
                          f"--val-split needs at least 2 per label (add rows or a split column)")
    n_val = max(int(round(len(examples) * val_split)), len(counts))
    if n_val >= len(examples) - len(counts) + 1:
        raise FusionError(f"{examples.source}: {len(examples)} rows are too few to hold out a validation set "
                          f"for {len(counts)} labels")
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(examples))
    train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=examples.labels)
    return examples.subset(np.sort(train)), examples.subset(np.sort(val))
