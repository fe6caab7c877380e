"""`fusionapp audit`: which rows of a table to look at, in a few passes over it.

1. Every row's signals (fusionapp/audit/signals.py): image hashes and thumbnails, text signatures.
2. A seeded sample of the labelled rows (all of them, up to --fit-rows): the features are fitted on
   it and a linear model cross-fitted, so each sampled row's probabilities come from folds that did
   not learn from it.
   With --time-limit, the whole network is cross-fitted on the sample too (network_fit.py).
3. Every row again, a chunk at a time (texts and cells only): its embedding, and the probabilities
   of the rows outside the sample, from the model fitted on the sample.
Then confident learning, duplicates and outliers on what was kept, and the reports
(fusionapp/audit/report.py). With --label-next, the run's own probabilities replace 2 and 3's.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from fusionapp.audit.confident import audit_labels, audit_multi_label
from fusionapp.audit.cross_fit import cross_fitted
from fusionapp.audit.duplicates import duplicate_pairs
from fusionapp.audit.findings import Findings, find_issues
from fusionapp.audit.network_fit import averaged, network_probabilities
from fusionapp.audit.next_rows import label_next_rows
from fusionapp.audit.passes import featurised_chunks, fitted_featurizer, shown_examples, table_chunks, tabular_kinds
from fusionapp.audit.report import check_out, out_of_fold_scores, shown_rows, write_reports
from fusionapp.audit.request import AuditRequest, sample_of
from fusionapp.audit.signals import TableSignals, table_signals
from fusionapp.errors import FusionError
from fusionapp.evaluation.calibration import probabilities_of
from fusionapp.inference.run_rows import run_columns, run_image_root
from fusionapp.preprocessing.labels import label_cell_problem, label_counts, label_matrix
from fusionapp.runs.load import load_run
from fusionapp.settings import Columns


@dataclass
class Labels:
    """The labelled rows' targets: class indices (-1: no label), or a 0/1 matrix and which rows have one."""

    class_names: list[str]
    classes: np.ndarray  # int64 [rows]; multi-label: -1 where the row has no label, else 0
    matrix: np.ndarray | None = None  # multi-label: [rows, labels]
    separator: str = "|"  # multi-label: how a label set is written, as the table writes it (--label-sep)

    @property
    def labelled(self) -> np.ndarray:
        return np.flatnonzero(self.classes >= 0)

    def names(self, row: int) -> list[str]:
        """The row's given class, or label set; none where it has no label."""
        if self.matrix is None:
            return [self.class_names[self.classes[row]]] if self.classes[row] >= 0 else []
        return [self.class_names[k] for k in np.flatnonzero(self.matrix[row])]

    def cells(self, rows=None) -> list[str]:
        """The given label of each of `rows` (all rows: None) as a table cell: the class, or the label
        set joined by the separator; "" where the row has no label."""
        rows = range(len(self.classes)) if rows is None else rows
        return [self.separator.join(self.names(row)) for row in rows]


@dataclass
class Scored:
    """Every row's signals, targets, out-of-fold probabilities and embedding."""

    signals: TableSignals
    columns: Columns
    labels: Labels
    probabilities: np.ndarray  # [rows, classes]: out of fold for the sampled rows
    embedding: np.ndarray  # [rows, EMBEDDING_WIDTH]
    sampled: int
    left_out: int  # sampled rows the first round flagged, left out of the second round's fits
    network: dict | None = None  # with --time-limit: the network's cross-fit, and how well it alone did


def run_audit(request: AuditRequest, say=print) -> dict:
    """Audit `request.data` into `request.out`; returns report.json's content."""
    started, wall_started = time.perf_counter(), time.time()
    settings = request.settings
    check_out(request.out, settings.overwrite)
    request, run, columns = _with_run(request)
    if settings.label_next:
        return label_next_rows(request, run, columns, say)
    deadline = wall_started + settings.time_limit if settings.time_limit else None
    scored = out_of_fold(request, run, columns, say, deadline)
    labels, signals, probabilities = scored.labels, scored.signals, scored.probabilities
    if labels.matrix is None:
        label_audit = audit_labels(labels.classes[labels.labelled], probabilities[labels.labelled])
    else:
        label_audit = audit_multi_label(labels.matrix[labels.labelled], probabilities[labels.labelled])
    say("Looking for duplicates and outliers ...")
    findings = find_issues(signals, labels, label_audit, probabilities, scored.embedding,
                           duplicate_pairs(signals.prints))
    shown = shown_examples(request, columns, signals, shown_rows(findings, settings.report_rows))
    report = write_reports(request, scored, label_audit, findings, shown, seconds=time.perf_counter() - started)
    say(f"Wrote {request.out}: {_summary(findings)}")
    return report


def out_of_fold(request: AuditRequest, run, columns: Columns, say=print, deadline: float | None = None) -> Scored:
    """Read the table and give every labelled row probabilities from a model that did not learn from
    it; with a `deadline` (time.time()), the network's cross-fitted ones too, where it leaves room."""
    settings = request.settings
    say(f"Reading {request.data} ...")
    modalities = run.modalities if run is not None else None
    signals = table_signals(table_chunks(request, columns, modalities, with_labels=True), say)
    kinds = tabular_kinds(request, columns, signals, run)
    multi_label = run.preprocessor.multi_label if run is not None else request.multi_label
    labels = _labels(signals, columns, multi_label, request.data)
    if len(labels.labelled) < 2 * settings.folds:
        raise FusionError(f"{request.data}: {len(labels.labelled)} labelled rows; the audit's {settings.folds}-fold "
                          f"cross-fit needs at least {2 * settings.folds} (column '{columns.label}')")
    sample = sample_of(labels.labelled, settings.fit_rows, settings.seed)
    say(f"Fitting the audit's features on {len(sample)} rows ...")
    featurizer, sample_rows = fitted_featurizer(request, columns, signals, kinds, sample)
    say(f"Cross-fitting a linear model, {settings.folds} folds, twice (the second time without the rows the "
        "first flags) ...")
    targets = labels.matrix[sample] if labels.matrix is not None else labels.classes[sample]
    fit = cross_fitted(featurizer.transform(sample_rows, signals.thumbnails[sample]), targets,
                       len(labels.class_names), settings.folds, settings.seed)
    network = None
    if deadline is not None:
        started = time.time()
        network = network_probabilities(request, columns, labels, sample, fit, signals.modalities, deadline, say)
        seconds = time.time() - started
    say("Scoring every row ...")
    probabilities, embedding = _every_row(request, columns, signals, featurizer, fit, labels, sample)
    summary = None
    if network is not None:
        probabilities[sample] = averaged(probabilities[sample], network, labels.matrix is not None)
        read = np.isfinite(network).any(axis=1)
        summary = {"seconds": round(seconds, 1), "rows": int(read.sum()),
                   **out_of_fold_scores(labels, sample[read], np.nan_to_num(network[read]))}
    return Scored(signals, columns, labels, probabilities, embedding, len(sample), fit.left_out, summary)


def _with_run(request: AuditRequest):
    """(request, run, columns): with --model, the run's columns and image root wherever the user
    named none."""
    if request.model is None:
        if request.settings.label_next:
            raise FusionError("--label-next needs --model RUN: the run whose uncertainty picks the rows")
        return request, None, request.columns
    run = load_run(request.model)
    columns = run_columns(run, {name: getattr(request.columns, name) for name in request.given_columns})
    return dataclasses.replace(request, image_root=run_image_root(run, request.image_root)), run, columns


def _labels(signals: TableSignals, columns: Columns, multi_label: bool, data: str) -> Labels:
    if signals.labels is None:
        raise FusionError(f"{data}: no column '{columns.label}' to audit (an unlabelled table needs --label-next)")
    cells = signals.labels
    if not multi_label:
        names = sorted({cell for cell in cells if cell})
        if len(names) < 2:
            raise FusionError(f"{data}: column '{columns.label}' has {len(names)} distinct label(s); an audit of "
                              "labels needs at least 2")
        index = {name: i for i, name in enumerate(names)}
        return Labels(names, np.array([index[cell] if cell else -1 for cell in cells], np.int64))
    cells = [cell or "" for cell in cells]
    for row, cell in zip(signals.row_numbers, cells):
        problem = label_cell_problem(cell, columns.label_sep)
        if problem:
            raise FusionError(f"{data}: row {row}, column '{columns.label}': {problem}")
    names = sorted(label_counts(cells, columns.label_sep))
    if not names:
        raise FusionError(f"{data}: column '{columns.label}' has no labels")
    matrix = label_matrix(cells, names, columns.label_sep)
    return Labels(names, np.where(matrix.any(axis=1), 0, -1).astype(np.int64), matrix, columns.label_sep)


def _every_row(request, columns, signals: TableSignals, featurizer, fit, labels: Labels, sample):
    """Every row's probabilities (out of fold in the sample, from the sample's model elsewhere) and
    embedding, a chunk at a time."""
    multi_label = labels.matrix is not None
    probabilities = np.zeros((len(signals), len(labels.class_names)), np.float32)
    embedding = np.zeros((len(signals), featurizer.embedding_width), np.float32)
    for where, features, embedded in featurised_chunks(request, columns, signals, featurizer):
        embedding[where] = embedded
        probabilities[where] = probabilities_of(features @ fit.kernel + fit.bias, multi_label)
    probabilities[sample] = probabilities_of(fit.held_out_logits, multi_label)
    return probabilities, embedding


def _summary(findings: Findings) -> str:
    counts = findings.counts()
    return ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "no issues"
