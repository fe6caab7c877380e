"""Label cells -> label sets, for multi-label runs: the one rule for reading them.

A cell holds labels joined by the run's separator (`Drama|Comedy`), or a JSON list (`["Drama",
"Comedy"]`, which is also what a JSON Lines list becomes as a cell). Labels are stripped; empty
ones and repeats are dropped, so an empty cell is a row with no label, not a bad row.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np


class LabelCellError(ValueError):
    """A cell that looks like a JSON list but is not one."""


def parse_label_set(cell: str, sep: str) -> tuple[str, ...]:
    """The labels of one cell, in order of first appearance."""
    text = cell.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            values = json.loads(text)
        except ValueError:
            raise LabelCellError("starts with '[' but is not a JSON list of labels") from None
        if not isinstance(values, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                                   for v in values):
            raise LabelCellError("a JSON list of labels must hold only strings or numbers")
        parts = [str(value) for value in values]
        joined = [part for part in parts if sep in part]
        if joined:
            # Predictions join a set's labels with the separator; this one could not be told apart.
            raise LabelCellError(f"holds the label {joined[0]!r}, which contains the separator {sep!r} "
                                 "(choose another with --label-sep)")
    else:
        parts = text.split(sep)
    return tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))


def label_cell_problem(cell: str, sep: str) -> str | None:
    """Why a label cell cannot be read, or None."""
    try:
        parse_label_set(cell, sep)
    except LabelCellError as error:
        return f"label cell {cell[:40]!r} {error}"
    return None


def label_counts(cells, sep: str) -> Counter:
    """How many rows carry each label."""
    counts = Counter()
    for cell in cells:
        counts.update(parse_label_set(cell, sep))
    return counts


def unknown_label_counts(cells, sep: str, known) -> dict[str, int]:
    """Labels of these cells outside `known` (a model's labels), with the rows carrying each."""
    known = set(known)
    return {label: count for label, count in sorted(label_counts(cells, sep).items()) if label not in known}


def label_matrix(cells, class_names, sep: str) -> np.ndarray:
    """Label cells -> a 0/1 float32 matrix [rows, labels]; labels not in `class_names` are left out."""
    index = {name: i for i, name in enumerate(class_names)}
    targets = np.zeros((len(cells), len(class_names)), np.float32)
    for row, cell in enumerate(cells):
        for label in parse_label_set(cell, sep):
            if label in index:
                targets[row, index[label]] = 1.0
    return targets
