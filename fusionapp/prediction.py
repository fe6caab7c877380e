"""`fusionapp predict`: a trained run + new image-text pairs -> labels and class probabilities."""

from __future__ import annotations

import sys

import numpy as np

from fusionapp import artifacts
from fusionapp.config import prediction_settings
from fusionapp.data.examples import BadRow, Examples
from fusionapp.errors import FusionError
from fusionapp.inference import Predictions, predict_examples
from fusionapp.run_rows import check_rows, column_renames, read_rows_for_run, run_columns, show_progress


def predict(model: str, data: str | None = None, *, image: str | None = None, text: str | None = None,
            tabular: dict | None = None, split: str | None = None, out: str | None = None, top_k: int = 1,
            on_bad_row: str = "skip", batch_size: int = 256, image_root: str | None = None,
            explain: bool = False, explain_dir: str | None = None, verbose: int = 1, **column_overrides):
    """Predict one pair (`image`, `text`, `tabular`) -> dict, or every row of `data` -> list of dicts.

    Table rows that cannot be read are returned with an `error` and no prediction. `explain` adds
    an `explanation` to a pair's answer (fusionapp/explanation.py); `explain_dir` writes a table's
    explanations there (a heat map per row and the text contributions).
    """
    options = prediction_settings(top_k=top_k, on_bad_row=on_bad_row, batch_size=batch_size)
    if data is None and explain_dir:
        raise FusionError("explain_dir explains a table (data); use explain=True for a single pair")
    if data is not None and explain:
        raise FusionError("explain=True explains a single pair; use explain_dir=DIR for a table")
    run = artifacts.load_run(model)
    if data is None:
        return predict_pair(run, image=image, text=text, tabular=tabular or {}, top_k=options.top_k, explain=explain)
    examples, bad_rows = read_rows_for_run(run, data, split, need_label=False,
                                           column_overrides=column_renames(column_overrides), image_root=image_root)
    if bad_rows and options.on_bad_row == "error":
        raise FusionError(bad_rows[0].message(examples.source))
    errors = {row.row: row.reason for row in bad_rows}
    good = [i for i, row in enumerate(examples.row_numbers) if int(row) not in errors]
    # A progress bar would be mixed into the CSV when that goes to stdout.
    predictions = predict_examples(run.model, examples.subset(good), options.batch_size,
                                   progress=show_progress(verbose) and bool(out))
    header, rows = prediction_table(examples, predictions, run.preprocessor.class_names, rows=good, errors=errors,
                                    top_k=options.top_k, label_sep=run.preprocessor.label_sep)
    if explain_dir:
        from fusionapp.explanation_files import write_explanations

        write_explanations(run.model, examples.subset(good), explain_dir)
    if out:
        artifacts.write_csv(out, header, rows)
    elif verbose:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    if verbose:
        print(f"Predicted {len(good)} rows" + (f", {len(errors)} could not be read" if errors else "")
              + (f"; wrote {out}" if out else ""), file=sys.stderr)
    return [dict(zip(header, row)) for row in rows]


def predict_pair(run, image: str | None, text: str | None, tabular: dict, top_k: int = 1,
                 explain: bool = False) -> dict:
    """One image-text(-tabular) pair given directly -> {predicted_label, confidence, probabilities,
    missing[, top_k][, explanation]}."""
    columns = run_columns(run)
    kinds = run.preprocessor.tabular_kinds
    unknown = sorted(set(tabular) - set(kinds))
    if unknown:
        raise FusionError(f"--tabular {unknown[0]}=...: this model has no tabular column '{unknown[0]}'"
                          + (f" (its columns: {', '.join(kinds)})" if kinds else " (it uses no tabular columns)"))
    examples = Examples(source="input", row_numbers=np.array([1]), ids=["1"],
                        images=[image or ""] if "image" in run.modalities else None, images_are_files=True,
                        texts=[text or ""] if "text" in run.modalities else None,
                        tabular={name: [tabular.get(name, "")] for name in kinds}, labels=None, splits=None)
    bad_rows = check_rows(run, examples, columns, need_label=False)
    if bad_rows:
        raise FusionError(_pair_message(bad_rows[0], columns))
    result = pair_result(predict_examples(run.model, examples), 0, run.preprocessor.class_names, top_k)
    if explain:
        from fusionapp.explanation import explain_examples

        result["explanation"] = explain_examples(run.model, examples)[0]
    return result


def pair_result(predictions: Predictions, index: int, class_names, top_k: int = 1) -> dict:
    """One row's answer as the JSON that `predict --json` prints and the server returns: for a
    multi-label model `predicted_labels` (likeliest first) and the `thresholds` instead of
    `predicted_label` and `confidence`."""
    probabilities = predictions.probabilities[index]
    if predictions.label_sets is not None:
        result = {"predicted_labels": predictions.label_sets[index],
                  "probabilities": {name: float(p) for name, p in zip(class_names, probabilities)},
                  "thresholds": {name: float(t) for name, t in zip(class_names, predictions.thresholds)},
                  "missing": predictions.missing[index]}
    else:
        best = int(np.argmax(probabilities))
        result = {"predicted_label": class_names[best], "confidence": float(probabilities[best]),
                  "probabilities": {name: float(p) for name, p in zip(class_names, probabilities)},
                  "missing": predictions.missing[index]}
    if top_k > 1:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        result["top_k"] = [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]
    return result


def _pair_message(bad_row: BadRow, columns) -> str:
    flags = {columns.image: "--image", columns.text: "--text"}
    flag = flags.get(bad_row.column, f"--tabular {bad_row.column}")
    return f"{flag}: {bad_row.reason}"


def prediction_table(examples: Examples, predictions: Predictions, class_names, rows=None, errors: dict | None = None,
                     top_k: int = 1, with_labels: bool = False, label_sep: str | None = None):
    """The prediction CSV of the README: id (or row), [label], predicted_label, confidence,
    prob_<class>..., [top_k], missing (the empty inputs the model answered without), error. A
    multi-label model's (`label_sep` given) has predicted_labels, joined by `label_sep` in order of
    probability, instead of predicted_label and confidence.

    `predictions` hold the rows at positions `rows` of `examples` (all of them when None); the
    others are listed with their reason from `errors` (keyed by row number).
    """
    errors = errors or {}
    position = {row: i for i, row in enumerate(range(len(examples)) if rows is None else rows)}
    header = ["id" if examples.has_ids else "row"] + (["label"] if with_labels else [])
    multi_label = predictions.label_sets is not None
    decided = ["predicted_labels"] if multi_label else ["predicted_label", "confidence"]
    header += decided + [f"prob_{name}" for name in class_names]
    header += (["top_k"] if top_k > 1 else []) + ["missing", "error"]
    table = []
    for i in range(len(examples)):
        row = [examples.ids[i]] + ([examples.labels[i]] if with_labels else [])
        if i not in position:
            reason = errors.get(int(examples.row_numbers[i]), "")
            row += [""] * len(decided) + [""] * len(class_names) + ([""] if top_k > 1 else []) + ["", reason]
        else:
            p = predictions.probabilities[position[i]]
            if multi_label:
                row.append(label_sep.join(predictions.label_sets[position[i]]))
            else:
                best = int(np.argmax(p))
                row += [class_names[best], f"{p[best]:.6f}"]
            row += [f"{value:.6f}" for value in p]
            if top_k > 1:
                # Labels of a set are joined as their cells are (they may hold spaces: "Science Fiction").
                row.append((label_sep if multi_label else " ").join(
                    class_names[j] for j in np.argsort(-p, kind="stable")[:top_k]))
            row += [" ".join(predictions.missing[position[i]]), ""]
        table.append(row)
    return header, table


def format_pair(result: dict) -> str:
    without = f"; answered without: {', '.join(result['missing'])}" if result.get("missing") else ""
    if "predicted_labels" in result:
        chosen = ", ".join(f"{name} ({result['probabilities'][name]:.4f})" for name in result["predicted_labels"])
        lines = [(chosen or "no label reaches its threshold") + without]
    else:
        lines = [f"{result['predicted_label']} (confidence {result['confidence']:.4f})" + without]
    for entry in result.get("top_k", []):
        lines.append(f"  {entry['label']:<20} {entry['probability']:.4f}")
    explanation = result.get("explanation")
    if explanation:
        lines.append("  blanking each input changes its probability by: " + ", ".join(
            f"{name} {change:+.3f}" for name, change in explanation["modalities"].items()))
        if explanation.get("text"):
            lines.append("  strongest words: " + ", ".join(f"{word} {weight:+.3f}" for word, weight in explanation["text"]))
        if explanation.get("tabular"):
            lines.append("  tabular columns: " + ", ".join(f"{name} {weight:+.3f}"
                                                         for name, weight in explanation["tabular"].items()))
        if explanation.get("image", {}).get("heatmap"):
            lines.append("  (the image heat map is in the --json answer)")
    return "\n".join(lines)
