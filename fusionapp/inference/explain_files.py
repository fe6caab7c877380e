"""`predict DATA --explain-dir DIR`: a table's explanations as files, one heat map PNG per row
(`<id>.png`) and one CSV of every row's explanation in numbers (`explanations.csv`)."""

from __future__ import annotations

import base64
import os
import re

from fusionapp.runs import files
from fusionapp.errors import FusionError
from fusionapp.inference.explain import explain_row
from fusionapp.inference.writers import TableWriter

HEADER = ["id", "kind", "name", "weight", "unit"]


def explanations_writer(folder: str):
    """The folder made, and a TableWriter of its explanations.csv (rows go in chunk by chunk)."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise FusionError(f"--explain-dir {folder}: cannot create it ({error.strerror})") from None
    return TableWriter(os.path.join(folder, "explanations.csv"))


def write_explanations(model, examples, folder: str, writer, names: set) -> int:
    """Explain every row of already-checked `examples`: a heat map PNG each into `folder` (`names`,
    the file names taken so far), their lines into `writer`; return the rows explained.

    explanations.csv has one line per figure: kind `modality` (the change in the predicted class's
    probability when that input is blanked), `text` (a word's contribution, strongest first),
    `tabular` (a column's contribution); for a multi-label model first `label`, the label
    explained (the likeliest), with its probability as the weight.
    """
    lines = []
    for i in range(len(examples)):
        explanation = explain_row(model, examples.subset([i]))
        row_id = examples.ids[i]
        units = explanation["units"]
        if "label" in explanation:
            lines.append([row_id, "label", explanation["label"], f"{explanation['probability']:.6f}", "probability"])
        lines += [[row_id, "modality", name, f"{change:.6f}", units["modalities"]]
                  for name, change in explanation["modalities"].items()]
        lines += [[row_id, "text", word, f"{weight:.6f}", units["text"]] for word, weight in explanation.get("text", [])]
        lines += [[row_id, "tabular", name, f"{weight:.6f}", units["tabular"]]
                  for name, weight in explanation.get("tabular", {}).items()]
        heatmap = explanation.get("image", {}).get("heatmap")
        if heatmap:
            name = file_name(row_id, names)
            with files.atomic_path(os.path.join(folder, name), suffix=".png") as temporary:
                with open(temporary, "wb") as handle:
                    handle.write(base64.b64decode(heatmap))
    writer.write(HEADER, lines)
    return len(examples)


def file_name(row_id: str, taken: set) -> str:
    """A safe, unique file name for a row's heat map: its id with odd characters replaced."""
    stem = re.sub(r"[^\w.-]", "_", str(row_id))[:100] or "row"
    name, n = f"{stem}.png", 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name)
    return name
