"""`fusionapp evaluate`: a trained run + labelled rows -> the scikit-learn report."""

from __future__ import annotations

import sys

from fusionapp import artifacts
from fusionapp.data.examples import Examples, drop_bad_rows
from fusionapp.inference import column_renames, predict_probabilities, progress_verbosity, read_rows_for_run
from fusionapp.metrics import classification_report, format_report


def evaluate(model: str, data: str, *, split: str | None = None, out: str | None = None,
             predictions: str | None = None, skipped: str | None = None, on_bad_row: str = "skip",
             ablate: bool = False, plots: str | None = None, batch_size: int = 256,
             image_root: str | None = None, verbose: int = 1, **column_overrides) -> dict:
    """Score run `model` on the labelled rows of `data`; return (and optionally write) the report.

    `column_overrides` rename columns for this data: `text_col="body"`, `label_col="y"`, ...
    """
    from fusionapp.artifacts import load_run
    from fusionapp.prediction import prediction_table

    run = load_run(model)
    examples, bad_rows = read_rows_for_run(run, data, split, need_label=True,
                                           column_overrides=column_renames(column_overrides), image_root=image_root)
    checked = drop_bad_rows(examples, bad_rows, on_bad_row)
    if checked.skipped and verbose:
        print(f"Skipped {len(checked.skipped)} bad rows; first: {checked.skipped[0].message(examples.source)}",
              file=sys.stderr)
    usable = checked.examples
    probabilities = predict_probabilities(run.model, run.preprocessing, usable, run.modalities,
                                          batch_size=batch_size, verbose=progress_verbosity(verbose))
    y_true = run.preprocessing.label_indices(usable.labels)
    report = classification_report(y_true, probabilities, run.preprocessing.class_names,
                                   n_skipped=len(checked.skipped))
    if ablate:
        report["ablation"] = modality_ablation(run, usable, report, batch_size)
    if verbose:
        print(format_report(report, title=f"Evaluation of {run.path} on {examples.source}"
                                          + (f" (split {split})" if split else "")))
        if ablate:
            print(format_ablation(report["ablation"]))
    if plots:
        from fusionapp.plots import evaluation_plots

        written = evaluation_plots(y_true, probabilities, run.preprocessing.class_names, plots)
        if verbose:
            print(f"Wrote {', '.join(written)}")
    if out:
        artifacts.write_json(out, report)
    if skipped:
        write_skipped(skipped, checked.skipped)
    if predictions:
        header, rows = prediction_table(usable, probabilities, run.preprocessing.class_names, run.modalities,
                                        with_labels=True)
        artifacts.write_csv(predictions, header, rows)
    return report


ABLATION_KEYS = ("accuracy", "macro_f1", "balanced_accuracy", "log_loss")


def modality_ablation(run, examples: Examples, full_report: dict, batch_size: int) -> dict:
    """For each modality: the metrics with that input blanked on every row, and the change.

    Blanking uses the model's own notion of a missing input (no image, empty text, empty tabular
    cells), which training taught it through modality dropout.
    """
    ablation = {}
    if len(run.modalities) < 2:
        return ablation
    y_true = run.preprocessing.label_indices(examples.labels)
    for modality in run.modalities:
        blanked = blank_modality(examples, modality)
        probabilities = predict_probabilities(run.model, run.preprocessing, blanked, run.modalities, batch_size)
        report = classification_report(y_true, probabilities, run.preprocessing.class_names)
        ablation[modality] = {key: report[key] for key in ABLATION_KEYS}
        ablation[modality].update({f"{key}_change": report[key] - full_report[key] for key in ABLATION_KEYS})
    return ablation


def blank_modality(examples: Examples, modality: str) -> Examples:
    import dataclasses

    empty = [""] * len(examples)
    if modality == "image":
        return dataclasses.replace(examples, images=empty)
    if modality == "text":
        return dataclasses.replace(examples, texts=empty)
    return dataclasses.replace(examples, tabular={name: empty for name in examples.tabular})


def format_ablation(ablation: dict) -> str:
    if not ablation:
        return "Modality ablation: the model uses a single modality"
    lines = ["Modality ablation (each input blanked on every row; change against all inputs):",
             f"  {'blanked':<10}{'accuracy':>10}{'change':>9}{'macro-F1':>10}{'change':>9}"]
    for modality, row in ablation.items():
        lines.append(f"  {modality:<10}{row['accuracy']:>10.4f}{row['accuracy_change']:>+9.4f}"
                     f"{row['macro_f1']:>10.4f}{row['macro_f1_change']:>+9.4f}")
    return "\n".join(lines)


def write_skipped(path: str, bad_rows) -> None:
    """The skipped rows as CSV (row, column, reason): what --on-bad-row skip left out."""
    artifacts.write_csv(path, ["row", "column", "reason"], [(row.row, row.column, row.reason) for row in bad_rows])


def evaluate_examples(model, prep, examples: Examples, modalities, n_skipped: int = 0) -> dict:
    """The report for already-checked examples and a model in memory (used after training)."""
    probabilities = predict_probabilities(model, prep, examples, modalities)
    return classification_report(prep.label_indices(examples.labels), probabilities, prep.class_names,
                                 n_skipped=n_skipped)

