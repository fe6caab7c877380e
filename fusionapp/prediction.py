"""`fusionapp predict`: a trained run + new image-text pairs -> labels and class probabilities."""

from __future__ import annotations

import sys

import numpy as np

from fusionapp import artifacts
from fusionapp.data.examples import BadRow, Examples, find_bad_rows, missing_inputs
from fusionapp.errors import FusionError
from fusionapp.inference import (column_renames, predict_probabilities, progress_verbosity,
                                 read_rows_for_run, run_columns)


def predict(model: str, data: str | None = None, *, image: str | None = None, text: str | None = None,
            tabular: dict | None = None, split: str | None = None, out: str | None = None, top_k: int = 1,
            on_bad_row: str = "skip", batch_size: int = 256, image_root: str | None = None,
            verbose: int = 1, **column_overrides):
    """Predict one pair (`image`, `text`, `tabular`) -> dict, or every row of `data` -> list of dicts.

    Table rows that cannot be read are returned with an `error` and no prediction.
    """
    from fusionapp.artifacts import load_run

    run = load_run(model)
    if data is None:
        return predict_pair(run, image=image, text=text, tabular=tabular or {}, top_k=top_k)
    examples, bad_rows = read_rows_for_run(run, data, split, need_label=False,
                                           column_overrides=column_renames(column_overrides), image_root=image_root)
    if bad_rows and on_bad_row == "error":
        raise FusionError(bad_rows[0].message(examples.source))
    errors = {row.row: row.reason for row in bad_rows}
    good = [i for i, row in enumerate(examples.row_numbers) if int(row) not in errors]
    usable = examples.subset(good)
    # A progress bar would be mixed into the CSV when that goes to stdout.
    probabilities = predict_probabilities(run.model, run.preprocessing, usable, run.modalities,
                                          batch_size=batch_size, verbose=progress_verbosity(verbose) if out else 0)
    full = np.full((len(examples), run.preprocessing.num_classes), np.nan, dtype=np.float32)
    full[good] = probabilities
    header, rows = prediction_table(examples, full, run.preprocessing.class_names, run.modalities, errors=errors,
                                    top_k=top_k)
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


def predict_pair(run, image: str | None, text: str | None, tabular: dict, top_k: int = 1) -> dict:
    """One image-text(-tabular) pair given directly -> {predicted_label, confidence, probabilities}."""
    columns = run_columns(run)
    kinds = run.preprocessing.tabular_kinds
    unknown = sorted(set(tabular) - set(kinds))
    if unknown:
        raise FusionError(f"--tabular {unknown[0]}=...: this model has no tabular column '{unknown[0]}'"
                          + (f" (its columns: {', '.join(kinds)})" if kinds else " (it uses no tabular columns)"))
    examples = Examples(source="input", row_numbers=np.array([1]), ids=["1"],
                        images=[image or ""] if "image" in run.modalities else None, images_are_files=True,
                        texts=[text or ""] if "text" in run.modalities else None,
                        tabular={name: [str(tabular.get(name, ""))] for name in kinds},
                        labels=None, splits=None)
    bad_rows = find_bad_rows(examples, columns, run.modalities, need_label=False, tabular_kinds=kinds)
    if bad_rows:
        raise FusionError(_pair_message(bad_rows[0], columns))
    probabilities = predict_probabilities(run.model, run.preprocessing, examples, run.modalities)[0]
    names = run.preprocessing.class_names
    best = int(np.argmax(probabilities))
    result = {"predicted_label": names[best], "confidence": float(probabilities[best]),
              "probabilities": {name: float(p) for name, p in zip(names, probabilities)},
              "missing": missing_inputs(examples, 0, run.modalities)}
    if top_k > 1:
        order = np.argsort(-probabilities)[:top_k]
        result["top_k"] = [{"label": names[i], "probability": float(probabilities[i])} for i in order]
    return result


def _pair_message(bad_row: BadRow, columns) -> str:
    flags = {columns.image: "--image", columns.text: "--text"}
    flag = flags.get(bad_row.column, f"--tabular {bad_row.column}")
    return f"{flag}: {bad_row.reason}"


def prediction_table(examples: Examples, probabilities, class_names, modalities, errors: dict | None = None,
                     top_k: int = 1, with_labels: bool = False):
    """CONTRACT.md's prediction CSV: id (or row), [label], predicted_label, confidence, prob_<class>...,
    [top_k], missing (the empty inputs the model answered without), error."""
    errors = errors or {}
    header = ["id" if examples.has_ids else "row"] + (["label"] if with_labels else [])
    header += ["predicted_label", "confidence"] + [f"prob_{name}" for name in class_names]
    header += (["top_k"] if top_k > 1 else []) + ["missing", "error"]
    rows = []
    for i in range(len(examples)):
        row = [examples.ids[i]] + ([examples.labels[i]] if with_labels else [])
        reason = errors.get(int(examples.row_numbers[i]))
        if reason:
            row += ["", ""] + [""] * len(class_names) + ([""] if top_k > 1 else []) + ["", reason]
        else:
            p = probabilities[i]
            best = int(np.argmax(p))
            row += [class_names[best], f"{p[best]:.6f}"] + [f"{value:.6f}" for value in p]
            if top_k > 1:
                row.append(" ".join(class_names[j] for j in np.argsort(-p)[:top_k]))
            row += [" ".join(missing_inputs(examples, i, modalities)), ""]
        rows.append(row)
    return header, rows


def format_pair(result: dict) -> str:
    lines = [f"{result['predicted_label']} (confidence {result['confidence']:.4f})"
             + (f"; answered without: {', '.join(result['missing'])}" if result.get("missing") else "")]
    for entry in result.get("top_k", []):
        lines.append(f"  {entry['label']:<20} {entry['probability']:.4f}")
    return "\n".join(lines)
