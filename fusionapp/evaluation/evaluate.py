"""`fusionapp evaluate`: a trained run + labelled rows -> the scikit-learn report."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from types import SimpleNamespace


from fusionapp.console import show_progress
from fusionapp.data.checks import drop_bad_rows
from fusionapp.data.examples import Examples
from fusionapp.errors import FusionError
from fusionapp.evaluation.report_text import format_ablation, format_report
from fusionapp.evaluation.metrics import prediction_report
from fusionapp.inference.answers import prediction_table
from fusionapp.inference.raw_inference import join_predictions, predict_examples
from fusionapp.inference.run_rows import column_renames, iter_rows_for_run
from fusionapp.runs import files, layout, load
from fusionapp.settings import prediction_settings
from fusionapp.evaluation.plots import evaluation_plots
from fusionapp.inference.writers import TableWriter


def evaluate(model: str, data: str, *, split: str | None = None, out: str | None = None,
             predictions: str | None = None, skipped: str | None = None, on_bad_row: str | None = None,
             ablate: bool = False, plots: str | None = None, batch_size: int | None = None,
             image_root: str | None = None, verbose: int = 1, sample: int | None = None,
             **column_overrides: str | None) -> dict:
    """Score a trained run on the labelled rows of a table with scikit-learn's metrics.

    The table is read with the run's own column names and image root unless others are given.

    Args:
        model: A run folder written by `train`, or the `model.keras` inside it.
        data: A table (CSV, TSV, JSON Lines, Parquet; a folder or glob of shards), `tfds:NAME[:SPLIT]`,
            or a pandas DataFrame or pyarrow Table.
        split: Score only the rows whose split column holds this value (e.g. "test").
        out: Write the report here as JSON.
        predictions: Write one row per scored example here (CSV).
        skipped: List the skipped bad rows here (CSV).
        on_bad_row: "skip" leaves unusable rows out and counts them; "error" stops at the first.
            None: the default of fusionapp.settings.PredictionSettings.
        ablate: Also score with each modality blanked, under `report["ablation"]`.
        plots: Folder to write confusion-matrix, ROC, precision-recall and reliability PNGs into.
        batch_size: Rows per prediction batch; None: the default of PredictionSettings.
        image_root: Folder relative image paths resolve against; None: the run's own, else the
            table's folder.
        verbose: 0 prints nothing; 1 prints the report.
        sample: Score a seeded sample of this many rows (of the split), stratified by label; None or 0:
            every row.
        **column_overrides: Columns named otherwise in this table: `image_col`, `text_col`,
            `label_col`, `split_col`, `id_col`.

    Returns:
        The report: the keys the README lists (`accuracy`, `macro_f1`, `per_class`, ...), or a
            multi-label run's.

    Raises:
        fusionapp.errors.FusionError: A missing or unreadable run, table, column or value, in one line.
    """
    options = prediction_settings(on_bad_row=on_bad_row, batch_size=batch_size, sample=sample)
    run = load.load_run(model)
    scored = _score_chunks(run, data, split, options, column_renames(column_overrides), image_root, predictions,
                           ablate, verbose)
    if scored.skipped and verbose:
        print(f"Skipped {len(scored.skipped)} bad rows; first: {scored.skipped[0].message(scored.source)}",
              file=sys.stderr)
    report = prediction_report(run.model, scored.labels, scored.predictions, n_skipped=len(scored.skipped))
    if ablate:
        report["ablation"] = _ablation_report(run, scored, report)
    if verbose:
        print(format_report(report, title=f"Evaluation of {run.path} on {scored.source}"
                                          + (f" (split {split})" if split else "")))
        if ablate:
            print(format_ablation(report["ablation"]))
    _write(run, scored, report, out, skipped, plots, verbose)
    return report


def _write(run, scored, report: dict, out: str | None, skipped: str | None, plots: str | None, verbose: int) -> None:
    """The files evaluate was asked for: the plots, the report, the skipped rows."""
    if plots:
        written = evaluation_plots(run.preprocessor.label_targets(scored.labels.labels),
                                   scored.predictions.probabilities, scored.predictions.predicted,
                                   run.preprocessor.class_names, plots)
        if verbose:
            print(f"Wrote {', '.join(written)}")
    if out:
        files.write_json(out, report)
    if skipped:
        layout.write_skipped(skipped, scored.skipped)


@dataclass
class _Scored:
    source: str
    labels: object  # .labels: the usable rows' label cells, in order
    predictions: object  # Predictions of the usable rows
    skipped: list
    blanked: dict  # modality -> Predictions with that input blanked (with ablate)


def _score_chunks(run, data, split, options, renames, image_root, predictions_path, ablate, verbose) -> _Scored:
    """Read, check and predict `data` a chunk of rows at a time; the per-row predictions, if asked
    for, are written as they come. What is kept of every row is its label and its predictions."""
    labels, parts, skipped, source = [], [], [], data
    blanked = {modality: [] for modality in (run.modalities if ablate and len(run.modalities) > 1 else ())}
    writer = TableWriter(predictions_path) if predictions_path else contextlib.nullcontext()
    with writer:
        for examples, bad_rows in iter_rows_for_run(run, data, split, need_label=True, column_overrides=renames,
                                                    image_root=image_root, sample=options.sample):
            source = examples.source
            if bad_rows and options.on_bad_row == "error":
                drop_bad_rows(examples, bad_rows, "error")
            bad = {row.row for row in bad_rows}
            usable = examples.subset([i for i, row in enumerate(examples.row_numbers) if int(row) not in bad])
            skipped.extend(bad_rows)
            if not len(usable):
                continue
            predicted = predict_examples(run.model, usable, options.batch_size, progress=show_progress(verbose))
            labels.extend(usable.labels)
            parts.append(predicted)
            for modality, found in blanked.items():
                found.append(predict_examples(run.model, usable.blanked(modality), options.batch_size))
            if predictions_path:
                writer.write(*prediction_table(usable, predicted, run.preprocessor.class_names, with_labels=True,
                                               label_sep=run.preprocessor.label_sep))
        if not parts:  # inside: the predictions file is not left behind
            first = f" (first: {skipped[0].message(source)})" if skipped else ""
            raise FusionError(f"no usable rows left: all {len(skipped)} rows are bad{first}")
    return _Scored(source, SimpleNamespace(labels=labels), join_predictions(parts), skipped,
                   {modality: join_predictions(found) for modality, found in blanked.items()})


def _ablation_report(run, scored: _Scored, full_report: dict) -> dict:
    keys = MULTILABEL_ABLATION_KEYS if run.preprocessor.multi_label else ABLATION_KEYS
    ablation = {}
    for modality, predicted in scored.blanked.items():
        report = prediction_report(run.model, scored.labels, predicted)
        ablation[modality] = {key: report[key] for key in keys}
        ablation[modality].update({f"{key}_change": report[key] - full_report[key] for key in keys})
    return ablation


ABLATION_KEYS = ("accuracy", "macro_f1", "balanced_accuracy", "log_loss")
MULTILABEL_ABLATION_KEYS = ("subset_accuracy", "micro_f1", "macro_f1", "samples_f1", "hamming_loss", "log_loss")


def evaluate_examples(model, examples: Examples, n_skipped: int = 0) -> dict:
    """The report for already-checked examples and a model in memory (used after training)."""
    return prediction_report(model, examples, predict_examples(model, examples), n_skipped=n_skipped)
