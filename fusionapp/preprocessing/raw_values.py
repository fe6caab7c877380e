"""What raw inputs are, and when one counts as missing: the rules every consumer shares.

Raw inputs travel column-wise as what a client has: encoded image bytes (empty = no image), texts,
and one value per tabular cell (a float for a numeric column, NaN when missing; a string for a
categorical one). Table cells and request fields become these values here, and the missing rules
below are TensorFlow ops so that training, prediction, the server and the exported SavedModel all
run the very same ones.
"""

from __future__ import annotations

import math
import re

import numpy as np

# Cells that mean "no value" in a tabular column of either kind (compared lower-cased, stripped).
MISSING_CELLS = ("", "nan", "na", "n/a", "null", "none")
# Runs of whitespace, Unicode separators and control characters become one space in texts and
# categories: a tab or a line separator carries no meaning worth a feature, and vocabulary files
# are written one entry per line.
_SPACES = r"[\s\pZ\p{Cc}]+"


# === Cells (Python: table cells and request fields -> raw values) ===
def is_missing_cell(cell) -> bool:
    """An empty cell, or one that says "no value" (`nan`, `NA`, `null`, ...)."""
    if isinstance(cell, float):
        return math.isnan(cell)
    return cell is None or str(cell).strip().lower() in MISSING_CELLS


def parse_number(cell) -> float:
    """A numeric column's cell as a float, NaN when it is missing; ValueError when it is not a number."""
    if is_missing_cell(cell):
        return math.nan
    if isinstance(cell, (int, float)) and not isinstance(cell, bool):
        return float(cell)
    return float(str(cell).strip())


def numeric_problem(cell) -> str | None:
    """Why a numeric column's cell cannot be used, or None (missing cells are fine)."""
    try:
        number = parse_number(cell)
    except ValueError:
        return f"'{_short(str(cell))}' is not a number"
    if math.isinf(number):
        return f"'{_short(str(cell))}' is not a finite number"
    return None


def numeric_values(cells) -> np.ndarray:
    """A numeric column's cells -> float32 with NaN for missing (and for unusable) cells; cells
    already parsed (a float array) are taken as they are."""
    if isinstance(cells, np.ndarray) and cells.dtype.kind == "f":
        return cells.astype(np.float32, copy=False)
    values = np.empty(len(cells), dtype=np.float32)
    for i, cell in enumerate(cells):
        try:
            values[i] = parse_number(cell)
        except ValueError:
            values[i] = np.nan
    return values


def category_values(cells) -> np.ndarray:
    """A categorical column's cells -> strings (missing ones as they are; `categories` maps them)."""
    return np.array(["" if cell is None else str(cell) for cell in cells], dtype=object)


def tabular_key(column: str) -> str:
    """The raw-input name of a tabular column (`tabular_price`); non-word characters become `_`."""
    return "tabular_" + re.sub(r"\W", "_", column)


def _short(value: str, limit: int = 40) -> str:
    value = value.strip()
    return value if len(value) <= limit else value[:limit] + "..."


# === TensorFlow ops (graph-safe; what the model sees) ===
def normalize_text(texts):
    """Whitespace, separator and control-character runs -> one space, trimmed."""
    import tensorflow as tf

    return tf.strings.strip(tf.strings.regex_replace(texts, _SPACES, " "))


def cut_text(texts, max_chars: int | None):
    """Each text's first `max_chars` characters (all of them with None: models saved before 0.8)."""
    import tensorflow as tf

    if max_chars is None:
        return texts
    return tf.strings.substr(texts, 0, max_chars, unit="UTF8_CHAR")


def normalize_category(cells):
    """A categorical cell as its category: spaces normalised as in texts, missing cells -> ""."""
    import tensorflow as tf

    cells = normalize_text(cells)
    lowered = tf.strings.lower(cells)
    missing = tf.reduce_any(tf.equal(lowered[..., None], tf.constant(MISSING_CELLS)), axis=-1)
    return tf.where(missing, tf.constant(""), cells)


def missing_inputs(raw: dict, modalities, tabular_columns):
    """A string tensor [batch]: the names of each row's missing inputs, space-separated ("" for none).

    Missing means: no image bytes; a text that is empty once spaces are normalised; every tabular
    cell missing (NaN numbers; empty, `nan`, `NA`, `null`, ... categories). `tabular_columns` is a
    list of (column, kind) pairs.
    """
    import tensorflow as tf

    names = []
    for modality in modalities:
        if modality == "image":
            missing = tf.equal(tf.strings.length(raw["image"]), 0)
        elif modality == "text":
            missing = tf.equal(tf.strings.length(normalize_text(raw["text"])), 0)
        else:
            cells = [tf.math.is_nan(raw[tabular_key(name)]) if kind == "numeric"
                     else tf.equal(tf.strings.length(normalize_category(raw[tabular_key(name)])), 0)
                     for name, kind in tabular_columns]
            missing = tf.reduce_all(tf.stack(cells, axis=-1), axis=-1)
        names.append(tf.where(missing, tf.constant(modality), tf.constant("")))
    joined = tf.strings.reduce_join(tf.stack(names, axis=-1), axis=-1, separator=" ")
    return tf.strings.strip(tf.strings.regex_replace(joined, " +", " "))
