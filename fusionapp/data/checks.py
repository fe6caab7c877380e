"""Which rows cannot be used, and why: the one check that training, evaluation, prediction and the
server run before any row reaches the model."""

from __future__ import annotations

import numpy as np

from fusionapp.settings import Columns
from fusionapp.data.examples import BadRow, CheckedExamples, Examples, raw_columns
from fusionapp.preprocessing.labels import label_cell_problem
from fusionapp.errors import FusionError
from fusionapp.preprocessing.raw_values import missing_inputs, numeric_problem
from fusionapp.data.image_checks import image_file_verdicts
from fusionapp.data.images import HEADER_BYTES, check_image_bytes, find_undecodable

_CHUNK = 65536  # rows per TensorFlow call: memory follows this, not the table
NO_INPUTS = "no inputs: every input of this row is empty"


def find_bad_rows(examples: Examples, columns: Columns, modalities, need_label: bool,
                  known_labels=None, tabular_kinds: dict[str, str] | None = None,
                  label_sep: str | None = None, model_checks: bool = True) -> list[BadRow]:
    """Every row that cannot be used, with the column and reason; at most one reason per row.

    `model_checks=False` leaves out the two checks that run TensorFlow and that the raw-input
    function repeats on its own: decoding each image (a batch holding one that does not decode
    fails as a whole, and is then checked in full) and finding the rows with no input at all
    (`has_no_input` on the missing inputs it reports). The server's batches take that path (what it
    saves: docs/serving.md, "A batch skips the checks the raw-input function repeats").

    A missing input (no image, empty text, empty tabular cells) is not a problem by itself: the
    model answers from the others. A row whose every input is missing is one. With `label_sep`
    (multi-label) a label cell is a set: an empty one is a row without labels, and labels outside
    `known_labels` are left out where the rows are scored, so only an unreadable cell is a problem.
    """
    tabular_kinds = tabular_kinds or {}
    problems: dict[int, BadRow] = {}

    def flag(index, column, reason):
        problems.setdefault(index, BadRow(int(examples.row_numbers[index]), column, reason))

    if need_label:
        if examples.labels is None:
            raise FusionError(f"{examples.source}: no column '{columns.label}' holding the labels")
        known = None if known_labels is None else set(known_labels)
        for i, label in enumerate(examples.labels):
            if label_sep is not None:
                reason = label_cell_problem(label, label_sep)
                if reason:
                    flag(i, columns.label, reason)
            elif not label:
                flag(i, columns.label, "empty label")
            elif known is not None and label not in known:
                flag(i, columns.label, f"label '{label}' was not seen in training "
                                       f"(known: {', '.join(sorted(known))})")
    if "tabular" in modalities:
        for name, kind in tabular_kinds.items():
            if kind == "numeric":
                for i, value in enumerate(examples.tabular[name]):
                    reason = numeric_problem(value)
                    if reason:
                        flag(i, name, reason)
    if model_checks:
        for i in np.flatnonzero(every_input_missing(examples, modalities, tabular_kinds)):
            flag(int(i), no_input_column(columns, modalities), NO_INPUTS)
    if "image" in modalities:
        for i, reason in _image_problems(examples, decode=model_checks).items():
            flag(i, columns.image, reason)
    return [problems[i] for i in sorted(problems)]


def has_no_input(missing: list[str], modalities) -> bool:
    """Whether a row is missing every input, from the names of its missing inputs (as the
    preprocessor's `missing` reports them)."""
    return len(missing) == len(modalities)


def no_input_column(columns: Columns, modalities) -> str:
    """The column a row with no input is reported under."""
    return columns.text if "text" in modalities else columns.image if "image" in modalities else ""


def _image_problems(examples: Examples, decode: bool = True) -> dict[int, str]:
    """{row index: why its image cannot be used}; each distinct image file is checked once; without
    `decode`, in-memory images are judged by their first bytes only."""
    images = examples.images
    if examples.images_are_files:
        verdicts = image_file_verdicts(images)
        return {i: verdicts[image] for i, image in enumerate(images) if image and verdicts[image]}
    problems = {}
    readable = []
    for i, image in enumerate(images):
        if not image:
            continue  # a missing image is a value the model knows, not an error
        reason = check_image_bytes(image[:HEADER_BYTES])
        if reason:
            problems[i] = reason
        else:
            readable.append(i)
    if not decode:
        return problems
    for position, reason in find_undecodable([images[i] for i in readable], False).items():
        problems[readable[position]] = reason
    return problems


def every_input_missing(examples: Examples, modalities, tabular_kinds: dict[str, str]) -> np.ndarray:
    """A bool per row: is every input of the row missing, by the preprocessor's own rule?"""
    if len(examples) == 0:
        return np.zeros(0, dtype=bool)
    parts = []
    for start in range(0, len(examples), _CHUNK):
        indices = None if len(examples) <= _CHUNK else np.arange(start, min(start + _CHUNK, len(examples)))
        raw = raw_columns(examples, modalities, tabular_kinds, indices)
        missing = missing_inputs(raw, modalities, list(tabular_kinds.items())).numpy()
        parts.append(np.array([has_no_input(names.split(), modalities) for names in missing], dtype=bool))
    return np.concatenate(parts)


def drop_bad_rows(examples: Examples, bad_rows: list[BadRow], on_bad_row: str) -> CheckedExamples:
    """Apply --on-bad-row: stop at the first bad row, or drop them all and keep count."""
    if bad_rows and on_bad_row == "error":
        raise FusionError(bad_rows[0].message(examples.source)
                          + (f" (and {len(bad_rows) - 1} more bad rows)" if len(bad_rows) > 1 else ""))
    bad = {row.row for row in bad_rows}
    keep = [i for i, row in enumerate(examples.row_numbers) if int(row) not in bad]
    if not keep:
        first = bad_rows[0].message(examples.source) if bad_rows else examples.source
        raise FusionError(f"no usable rows left: all {len(examples)} rows are bad (first: {first})")
    return CheckedExamples(examples.subset(keep), list(bad_rows))
