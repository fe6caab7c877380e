"""`audit --label-next N --model RUN`: the run scores the unlabelled rows, and
fusionapp/audit/label_next.py picks N of them, uncertain and spread over the audit's embedding."""

from __future__ import annotations

import dataclasses

import numpy as np

from fusionapp.audit.label_next import margins, rows_to_label
from fusionapp.audit.passes import featurised_chunks, fitted_featurizer, table_chunks, tabular_kinds
from fusionapp.audit.report import write_label_next
from fusionapp.audit.request import AuditRequest, sample_of
from fusionapp.audit.signals import table_signals
from fusionapp.errors import FusionError
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.inference.run_rows import iter_rows_for_run


def label_next_rows(request: AuditRequest, run, columns, say) -> dict:
    """The rows to label next, by the run's uncertainty spread over the audit's embedding."""
    say(f"Reading {request.data} ...")
    signals = table_signals(table_chunks(request, columns, run.modalities, with_labels=False), say)
    kinds = tabular_kinds(request, columns, signals, run)
    settings = request.settings
    unlabelled = (np.ones(len(signals), bool) if signals.labels is None
                  else np.array([not cell for cell in signals.labels]))
    candidates = np.flatnonzero(unlabelled)
    if not len(candidates):
        raise FusionError(f"{request.data}: every row has a label (column '{columns.label}'): nothing to label next")
    say(f"Scoring {len(signals)} rows with {request.model} ...")
    sample = sample_of(np.arange(len(signals)), settings.fit_rows, settings.seed)
    featurizer, _ = fitted_featurizer(request, columns, signals, kinds, sample)
    multi_label = run.preprocessor.multi_label
    probabilities = np.full((len(signals), run.preprocessor.num_classes), np.nan, np.float32)
    embedding = np.zeros((len(signals), featurizer.embedding_width), np.float32)
    positions = {int(row): index for index, row in enumerate(signals.row_numbers)}
    for examples, bad_rows in iter_rows_for_run(run, request.data, None, need_label=False,
                                                column_overrides=dataclasses.asdict(columns),
                                                image_root=request.image_root):
        bad = {bad.row for bad in bad_rows}
        keep = [i for i, row in enumerate(examples.row_numbers) if int(row) not in bad]
        kept = examples.subset(keep)
        where = np.array([positions[int(row)] for row in kept.row_numbers], np.int64)
        if len(kept):
            probabilities[where] = predict_examples(run.model, kept).probabilities
    for where, _, embedded in featurised_chunks(request, columns, signals, featurizer):
        embedding[where] = embedded
    scored = candidates[np.isfinite(probabilities[candidates]).all(axis=1)]
    if not len(scored):
        raise FusionError(f"{request.data}: no unlabelled row could be scored by {request.model}")
    margin = margins(probabilities[scored], multi_label)
    picked = rows_to_label(margin, embedding[scored], settings.label_next, settings.seed)
    chosen = scored[picked]
    written = write_label_next(request, signals, chosen, probabilities[chosen], margin[picked],
                               run.preprocessor.class_names, len(candidates), len(scored))
    say(f"Wrote the {len(chosen)} rows to label next to {written}")
    return {"label_next": len(chosen), "unlabelled": int(len(candidates)), "scored": int(len(scored))}
