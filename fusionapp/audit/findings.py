"""The audit's verdicts as issues: one line per (row, kind), with a score (higher: worse), the label
suggested where there is one, and a short reason in words."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from fusionapp.audit.confident import LabelAudit
from fusionapp.audit.outliers import class_distances, column_distances, far_rows
from fusionapp.audit.signals import IMAGE_BLANK, IMAGE_NONE, IMAGE_OK, IMAGE_UNREADABLE, TableSignals

# In the order the issues table and the report list them.
KINDS = {
    "label": "the given label is likely wrong (confident learning)",
    "leak": "a duplicate of a row in another split",
    "label_conflict": "a duplicate of a row with another label",
    "duplicate": "a near-identical copy of an earlier row (in every input both rows have)",
    "outlier": "far from every class",
    "odd_image": "an image far from the rest of the column",
    "unreadable_image": "an image that cannot be read",
    "blank_image": "no image, or one that shows nothing",
    "blank_text": "an empty text",
}
# The split a duplicate in another one leaks into, most to least serious.
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


@dataclass
class Findings:
    rows: list[int] = field(default_factory=list)  # index in the table's order
    kinds: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    suggested: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    others: list[int] = field(default_factory=list)  # the other row of a duplicate (index), else -1
    quality: np.ndarray | None = None  # every row's label-quality score (NaN: no label)
    suggested_labels: list[str] = field(default_factory=list)  # every row's likeliest label(s)
    _order: list[int] = field(default_factory=list, repr=False)  # order()'s answer, kept while no issue is added

    def add(self, row: int, kind: str, score: float, reason: str, suggested: str = "", other: int = -1) -> None:
        self.rows.append(int(row))
        self.kinds.append(kind)
        self.scores.append(float(score))
        self.suggested.append(suggested)
        self.reasons.append(reason)
        self.others.append(int(other))

    def counts(self) -> dict[str, int]:
        counted = defaultdict(int)
        for kind in self.kinds:
            counted[kind] += 1
        return {kind: counted[kind] for kind in KINDS if counted[kind]}

    def order(self) -> list[int]:
        """Issue positions by kind (KINDS' order), then worst first, then by row."""
        if len(self._order) != len(self.rows):  # add() only appends, so a new issue changes the count
            rank = {kind: i for i, kind in enumerate(KINDS)}
            self._order = sorted(range(len(self.rows)),
                                 key=lambda i: (rank[self.kinds[i]], -self.scores[i], self.rows[i]))
        return self._order


def find_issues(signals: TableSignals, labels, label_audit, probabilities, embedding, pairs) -> Findings:
    findings = Findings()
    _label_issues(findings, labels, label_audit, probabilities, len(signals))
    _duplicate_issues(findings, signals, pairs)
    _outlier_issues(findings, signals, labels, embedding)
    _input_issues(findings, signals)
    return findings


def _label_issues(findings: Findings, labels, label_audit, probabilities, rows: int) -> None:
    names = labels.class_names
    labelled = labels.labelled
    findings.quality = np.full(rows, np.nan)
    if isinstance(label_audit, LabelAudit):
        findings.quality[labelled] = label_audit.quality
        findings.suggested_labels = [names[i] for i in probabilities.argmax(axis=1)]
        for position in np.flatnonzero(label_audit.flagged):
            row = labelled[position]
            given, likely = labels.classes[row], label_audit.suggested[position]
            findings.add(row, "label", 1 - label_audit.quality[position],
                         f"labelled {names[given]!r} (p={probabilities[row, given]:.2f}) but looks like "
                         f"{names[likely]!r} (p={probabilities[row, likely]:.2f})", names[likely])
        return
    # Multi-label: one audit per label; a row's quality is its worst label's.
    quality = np.stack([audit.quality for audit in label_audit], axis=1)
    flagged = np.stack([audit.flagged for audit in label_audit], axis=1)
    findings.quality[labelled] = quality.min(axis=1)
    findings.suggested_labels = [labels.separator.join(names[k] for k in np.flatnonzero(row >= 0.5))
                                 for row in probabilities]
    for position in np.flatnonzero(flagged.any(axis=1)):
        row = labelled[position]
        wrong = np.flatnonzero(flagged[position])
        words = [f"{'tagged' if labels.matrix[row, k] else 'not tagged'} {names[k]!r} (p={probabilities[row, k]:.2f})"
                 for k in wrong[np.argsort(quality[position, wrong])][:3]]
        findings.add(row, "label", 1 - quality[position, wrong].min(), "; ".join(words),
                     findings.suggested_labels[row])


def _duplicate_issues(findings: Findings, signals: TableSignals, pairs) -> None:
    """Each pair's later row is a duplicate of its earlier one (of its earliest, where several); a
    pair across splits is a leak into the later split's row; a pair with two labels, a conflict
    on both rows."""
    first, second = pairs
    earliest = {}
    for low, high in zip(first.tolist(), second.tolist()):
        earliest.setdefault(high, low)
    for row, other in sorted(earliest.items()):
        findings.add(row, "duplicate", 1.0, f"duplicates row {signals.row_numbers[other]}", other=other)
    splits, cells = signals.splits, signals.labels
    for low, high in zip(first.tolist(), second.tolist()):
        if splits is not None and splits[low] != splits[high]:
            source, target = sorted((low, high), key=lambda row: (_SPLIT_ORDER.get(splits[row], 3), row))
            findings.add(target, "leak", 1.0, f"a {splits[target] or 'blank'} split row that duplicates "
                                              f"{splits[source] or 'blank'} split row {signals.row_numbers[source]}",
                         other=source)
        if cells is not None and cells[low] and cells[high] and cells[low] != cells[high]:
            for row, other in ((low, high), (high, low)):
                findings.add(row, "label_conflict", 1.0, f"labelled {cells[row]!r}, its duplicate row "
                                                         f"{signals.row_numbers[other]} {cells[other]!r}", other=other)


def _outlier_issues(findings: Findings, signals: TableSignals, labels, embedding) -> None:
    classes = labels.classes if labels.matrix is None else np.where(labels.classes >= 0, 0, -1)
    flagged, ratio = far_rows(class_distances(embedding, classes, max(len(labels.class_names), 1)))
    for row in np.flatnonzero(flagged):
        findings.add(row, "outlier", ratio[row], f"{ratio[row]:.1f} x the median row's distance from its nearest "
                                                 "class")
    if "image" in signals.modalities:
        flagged, ratio = far_rows(column_distances(signals.thumbnails, signals.image_states == IMAGE_OK))
        for row in np.flatnonzero(flagged):
            findings.add(row, "odd_image", ratio[row], f"{ratio[row]:.1f} x the median image's distance from the "
                                                       "column's mean")


def _input_issues(findings: Findings, signals: TableSignals) -> None:
    for row, reason in signals.image_reasons.items():
        if signals.image_states[row] == IMAGE_UNREADABLE:
            findings.add(row, "unreadable_image", 1.0, reason)
    for row in np.flatnonzero(signals.image_states == IMAGE_BLANK):
        findings.add(row, "blank_image", 1.0, "one flat colour")
    if "image" in signals.modalities:
        for row in np.flatnonzero(signals.image_states == IMAGE_NONE):
            findings.add(row, "blank_image", 1.0, "no image in the row")
    for row in np.flatnonzero(signals.texts_blank):
        findings.add(row, "blank_text", 1.0, "no text")
