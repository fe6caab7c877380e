"""Predictions as people and programs read them: one pair's JSON answer (predict --json, the server)
and the prediction table (predict's CSV, evaluate --predictions). Every decision in them is the
raw-input function's (fusionapp.inference.raw_inference); nothing is re-ranked here."""

from __future__ import annotations

from fusionapp.data.examples import Examples
from fusionapp.inference.raw_inference import Predictions


def pair_result(predictions: Predictions, index: int, class_names, top_k: int = 1) -> dict:
    """One row's answer as the JSON that `predict --json` prints and the server returns: for a
    multi-label model `predicted_labels` (likeliest first) and the `thresholds` instead of
    `predicted_label` and `confidence`."""
    probabilities = predictions.probabilities[index]
    result = {"probabilities": {name: float(p) for name, p in zip(class_names, probabilities)},
              "missing": predictions.missing[index]}
    if predictions.label_sets is not None:
        result = {"predicted_labels": predictions.label_sets[index], **result,
                  "thresholds": {name: float(t) for name, t in zip(class_names, predictions.thresholds)}}
    else:
        best = int(predictions.predicted[index])
        result = {"predicted_label": class_names[best], "confidence": float(probabilities[best]), **result}
    if top_k > 1:
        result["top_k"] = [{"label": class_names[i], "probability": float(probabilities[i])}
                           for i in predictions.top(index, top_k)]
    return result


def prediction_table(examples: Examples, predictions: Predictions, class_names, rows=None, errors: dict | None = None,
                     top_k: int = 1, with_labels: bool = False, label_sep: str | None = None):
    """The prediction table: id (or row), [label], predicted_label, confidence, prob_<class>...,
    [top_k], missing (the empty inputs the model answered without, space-separated), error. A
    multi-label model's (`label_sep` given) has predicted_labels, joined by `label_sep` in order of
    probability, instead of predicted_label and confidence.

    Cells are typed: probabilities and confidence are floats, top_k a list of labels (likeliest
    first), a row that could not be read has None where its prediction would be. The writers
    (fusionapp.inference.writers) decide how each type is spelt in CSV and in Parquet.

    `predictions` hold the rows at positions `rows` of `examples` (all of them when None); the
    others are listed with their reason from `errors` (keyed by row number).
    """
    errors = errors or {}
    position = {row: i for i, row in enumerate(range(len(examples)) if rows is None else rows)}
    multi_label = predictions.label_sets is not None
    decided = ["predicted_labels"] if multi_label else ["predicted_label", "confidence"]
    header = (["id" if examples.has_ids else "row"] + (["label"] if with_labels else []) + decided
              + [f"prob_{name}" for name in class_names] + (["top_k"] if top_k > 1 else []) + ["missing", "error"])
    table = []
    for i in range(len(examples)):
        row = [examples.ids[i]] + ([examples.labels[i]] if with_labels else [])
        if i not in position:
            reason = errors.get(int(examples.row_numbers[i]), "")
            table.append(row + [None] * (len(header) - len(row) - 2) + ["", reason])
            continue
        at = position[i]
        p = predictions.probabilities[at]
        if multi_label:
            row.append(label_sep.join(predictions.label_sets[at]))
        else:
            best = int(predictions.predicted[at])
            row += [class_names[best], float(p[best])]
        row += [float(value) for value in p]
        if top_k > 1:
            row.append([class_names[j] for j in predictions.top(at, top_k)])
        table.append(row + [" ".join(predictions.missing[at]), ""])
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
        lines += explanation_lines(explanation)
    return "\n".join(lines)


def explanation_lines(explanation: dict) -> list[str]:
    """An explanation as text, each figure with its unit (fusionapp.inference.explain)."""
    units = explanation["units"]
    lines = ["  blanking each input changes the explained class's probability by: " + ", ".join(
        f"{name} {change:+.3f}" for name, change in explanation["modalities"].items())]
    if explanation.get("text"):
        lines.append(f"  strongest words ({_unit_words(units['text'])}): "
                     + ", ".join(f"{word} {weight:+.3f}" for word, weight in explanation["text"]))
    if explanation.get("tabular"):
        lines.append(f"  tabular columns ({_unit_words(units['tabular'])}): "
                     + ", ".join(f"{name} {weight:+.3f}" for name, weight in explanation["tabular"].items()))
    image = explanation.get("image")
    if image and image.get("heatmap"):
        lines.append(f"  image heat map: strength {image['strength']:.2f} of 1 (its opacity: how much blanking the "
                     "image moved the probability); the PNG is in the --json answer, or written by --heatmap-out")
    if explanation.get("missing"):
        lines.append(f"  no figures for the missing inputs: {', '.join(explanation['missing'])}")
    return lines


def _unit_words(unit: str) -> str:
    return unit.split(":")[0]
