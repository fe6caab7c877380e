"""`fusionapp evaluate`: a trained run + labelled rows -> the scikit-learn report."""

from __future__ import annotations

import sys

from fusionapp.console import show_progress
from fusionapp.data.checks import drop_bad_rows
from fusionapp.data.examples import Examples
from fusionapp.evaluation.format import format_ablation, format_report
from fusionapp.evaluation.metrics import prediction_report
from fusionapp.inference.answers import prediction_table
from fusionapp.inference.raw import predict_examples
from fusionapp.inference.rows import column_renames, read_rows_for_run
from fusionapp.runs import files, layout, load
from fusionapp.settings import prediction_settings


def evaluate(model: str, data: str, *, split: str | None = None, out: str | None = None,
             predictions: str | None = None, skipped: str | None = None, on_bad_row: str | None = None,
             ablate: bool = False, plots: str | None = None, batch_size: int | None = None,
             image_root: str | None = None, verbose: int = 1, **column_overrides) -> dict:
    """Score run `model` on the labelled rows of `data`; return (and optionally write) the report.

    `column_overrides` rename columns for this data: `text_col="body"`, `label_col="y"`, ... None
    means the default of `on_bad_row` and `batch_size` (fusionapp.settings.PredictionSettings).
    """
    options = prediction_settings(on_bad_row=on_bad_row, batch_size=batch_size)
    run = load.load_run(model)
    examples, bad_rows = read_rows_for_run(run, data, split, need_label=True,
                                           column_overrides=column_renames(column_overrides), image_root=image_root)
    checked = drop_bad_rows(examples, bad_rows, options.on_bad_row)
    if checked.skipped and verbose:
        print(f"Skipped {len(checked.skipped)} bad rows; first: {checked.skipped[0].message(examples.source)}",
              file=sys.stderr)
    usable = checked.examples
    predicted = predict_examples(run.model, usable, options.batch_size, progress=show_progress(verbose))
    class_names = run.preprocessor.class_names
    report = prediction_report(run.model, usable, predicted, n_skipped=len(checked.skipped))
    if ablate:
        report["ablation"] = modality_ablation(run, usable, report, options.batch_size)
    if verbose:
        print(format_report(report, title=f"Evaluation of {run.path} on {examples.source}"
                                          + (f" (split {split})" if split else "")))
        if ablate:
            print(format_ablation(report["ablation"]))
    if plots:
        from fusionapp.evaluation.plots import evaluation_plots

        written = evaluation_plots(run.preprocessor.label_targets(usable.labels), predicted.probabilities,
                                   predicted.predicted, class_names, plots)
        if verbose:
            print(f"Wrote {', '.join(written)}")
    if out:
        files.write_json(out, report)
    if skipped:
        layout.write_skipped(skipped, checked.skipped)
    if predictions:
        header, rows = prediction_table(usable, predicted, class_names, with_labels=True,
                                        label_sep=run.preprocessor.label_sep)
        files.write_csv(predictions, header, rows)
    return report


ABLATION_KEYS = ("accuracy", "macro_f1", "balanced_accuracy", "log_loss")
MULTILABEL_ABLATION_KEYS = ("subset_accuracy", "micro_f1", "macro_f1", "samples_f1", "hamming_loss", "log_loss")


def modality_ablation(run, examples: Examples, full_report: dict, batch_size: int) -> dict:
    """For each modality: the metrics with that input blanked on every row, and the change.

    Blanking uses the model's own notion of a missing input (no image, empty text, empty tabular
    cells), which training taught it through modality dropout.
    """
    ablation = {}
    if len(run.modalities) < 2:
        return ablation
    keys = MULTILABEL_ABLATION_KEYS if run.preprocessor.multi_label else ABLATION_KEYS
    for modality in run.modalities:
        blanked = examples.blanked(modality)
        report = prediction_report(run.model, blanked, predict_examples(run.model, blanked, batch_size))
        ablation[modality] = {key: report[key] for key in keys}
        ablation[modality].update({f"{key}_change": report[key] - full_report[key] for key in keys})
    return ablation


def evaluate_examples(model, examples: Examples, n_skipped: int = 0) -> dict:
    """The report for already-checked examples and a model in memory (used after training)."""
    return prediction_report(model, examples, predict_examples(model, examples), n_skipped=n_skipped)
