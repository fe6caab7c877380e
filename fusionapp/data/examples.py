"""Rows of a table or TFDS data set as column arrays, and the checks that find unusable rows."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from fusionapp.config import Columns
from fusionapp.errors import FusionError

SPLITS = ("train", "val", "test")
MISSING_NUMBERS = {"", "nan", "na", "n/a", "null", "none"}


@dataclass
class Examples:
    """Column arrays for a set of examples; `images` holds file paths or encoded bytes."""

    source: str
    row_numbers: np.ndarray  # 1-based row in the source, for messages
    ids: list[str]
    images: list | None
    images_are_files: bool
    texts: list[str] | None
    tabular: dict[str, list[str]]
    labels: list[str] | None
    splits: list[str] | None
    has_ids: bool = False  # ids come from an id column, not row numbers

    @property
    def modalities(self) -> tuple[str, ...]:
        present = {"image": self.images is not None, "text": self.texts is not None, "tabular": bool(self.tabular)}
        return tuple(name for name, here in present.items() if here)

    def __len__(self) -> int:
        return len(self.row_numbers)

    def subset(self, indices) -> "Examples":
        indices = np.asarray(indices, dtype=int)

        def pick(values):
            return None if values is None else [values[i] for i in indices]

        return Examples(
            source=self.source,
            row_numbers=self.row_numbers[indices],
            ids=pick(self.ids),
            images=pick(self.images),
            images_are_files=self.images_are_files,
            texts=pick(self.texts),
            tabular={name: pick(values) for name, values in self.tabular.items()},
            labels=pick(self.labels),
            splits=pick(self.splits),
            has_ids=self.has_ids,
        )

    def select_split(self, split: str) -> "Examples":
        if self.splits is None:
            raise FusionError(f"{self.source}: --split {split} given but the data has no split column")
        present = sorted(set(self.splits))
        if split not in present:
            raise FusionError(f"{self.source}: no rows with split '{split}' (splits present: {', '.join(present)})")
        return self.subset([i for i, value in enumerate(self.splits) if value == split])


@dataclass
class BadRow:
    row: int
    column: str
    reason: str

    def message(self, source: str) -> str:
        where = f"{source} row {self.row}" + (f", column '{self.column}'" if self.column else "")
        return f"{where}: {self.reason}"


@dataclass
class CheckedExamples:
    """The usable examples and what was dropped on the way, for summaries and skipped.csv."""

    examples: Examples
    skipped: list[BadRow] = field(default_factory=list)


def load_examples(data: str, columns: Columns, image_root: str | None = None, need_label: bool = True,
                  modalities=None) -> Examples:
    """Read a table path or `tfds:NAME[:SPLIT]` into Examples, checking that the columns exist.

    `modalities=None` takes every modality the data has: image and text when their columns exist,
    tabular when tabular columns were named.
    """
    if data.startswith("tfds:"):
        from fusionapp.data.tfds_source import load_tfds_examples

        return load_tfds_examples(data, columns, need_label=need_label, modalities=modalities)
    from fusionapp.data.tables import read_table

    table = read_table(data)
    if modalities is None:
        modalities = default_modalities(columns, table.columns)
        if not modalities:
            raise FusionError(f"{table.path}: no column '{columns.image}' or '{columns.text}' and no "
                              f"--tabular-col, so there is nothing to learn from "
                              f"(columns: {', '.join(table.columns)})")
    needed = []
    if "image" in modalities:
        needed.append(columns.image)
    if "text" in modalities:
        needed.append(columns.text)
    if "tabular" in modalities:
        needed.extend(columns.tabular_names)
    if need_label:
        needed.append(columns.label)
    for name in needed:
        if name not in table.columns:
            raise FusionError(f"{table.path}: no column '{name}' (columns: {', '.join(table.columns)})")
    root = image_root if image_root is not None else os.path.dirname(os.path.abspath(table.path))

    def column(name):
        return [row.get(name, "") for row in table.rows]

    images = None
    if "image" in modalities:
        images = [_resolve(path.strip(), root) for path in column(columns.image)]
    has_split = columns.split in table.columns
    ids = column(columns.id) if columns.id in table.columns else [str(i + 1) for i in range(len(table.rows))]
    return Examples(
        source=table.path,
        row_numbers=np.arange(1, len(table.rows) + 1),
        ids=ids,
        images=images,
        images_are_files=True,
        texts=column(columns.text) if "text" in modalities else None,
        tabular={name: column(name) for name in columns.tabular_names} if "tabular" in modalities else {},
        labels=[label.strip() for label in column(columns.label)] if columns.label in table.columns else None,
        splits=[value.strip().lower() for value in column(columns.split)] if has_split else None,
        has_ids=columns.id in table.columns,
    )


def default_modalities(columns: Columns, available) -> list[str]:
    """Every modality the data has: image/text when their column exists, tabular when named.

    A column the user named explicitly (`--text-col caption`) counts as wanted, so its absence
    is reported rather than silently training without that modality.
    """
    defaults = Columns()
    modalities = []
    for name in ("image", "text"):
        column = getattr(columns, name)
        if column in available or column != getattr(defaults, name):
            modalities.append(name)
    return modalities + (["tabular"] if columns.tabular else [])


def _resolve(path: str, root: str) -> str:
    if not path:
        return ""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def find_bad_rows(examples: Examples, columns: Columns, modalities, need_label: bool,
                  known_labels=None, tabular_kinds: dict[str, str] | None = None,
                  check_images: bool = True) -> list[BadRow]:
    """Every row that cannot be used, with the column and reason; at most one reason per row."""
    from fusionapp.data.images import HEADER_BYTES, check_image_bytes, check_image_file, find_undecodable

    problems: dict[int, BadRow] = {}

    def flag(index, column, reason):
        problems.setdefault(index, BadRow(int(examples.row_numbers[index]), column, reason))

    if need_label:
        if examples.labels is None:
            raise FusionError(f"{examples.source}: no column '{columns.label}' holding the labels")
        known = None if known_labels is None else set(known_labels)
        for i, label in enumerate(examples.labels):
            if not label:
                flag(i, columns.label, "empty label")
            elif known is not None and label not in known:
                flag(i, columns.label, f"label '{label}' was not seen in training "
                                       f"(known: {', '.join(sorted(known))})")
    for i in range(len(examples)):
        if len(missing_inputs(examples, i, modalities)) == len(modalities):
            column = columns.text if "text" in modalities else columns.image if "image" in modalities else ""
            flag(i, column, "no inputs: every input of this row is empty")
    for name, kind in (tabular_kinds or {}).items():
        if kind != "numeric" or "tabular" not in modalities:
            continue
        for i, value in enumerate(examples.tabular[name]):
            reason = numeric_problem(value)
            if reason:
                flag(i, name, reason)
    if "image" in modalities and check_images:
        check = check_image_file if examples.images_are_files else (lambda b: check_image_bytes(b[:HEADER_BYTES]))
        readable = []
        for i, image in enumerate(examples.images):
            if not image:
                continue  # a missing image is a value the model knows, not an error
            reason = check(image)
            if reason:
                flag(i, columns.image, reason)
            elif i not in problems:
                readable.append(i)
        failures = find_undecodable([examples.images[i] for i in readable], examples.images_are_files)
        for position, reason in failures.items():
            flag(readable[position], columns.image, reason)
    return [problems[i] for i in sorted(problems)]


def missing_inputs(examples: Examples, index: int, modalities) -> list[str]:
    """The modalities of row `index` that are empty: no image path, blank text, all tabular cells empty."""
    missing = []
    if "image" in modalities and not examples.images[index]:
        missing.append("image")
    if "text" in modalities and not examples.texts[index].strip():
        missing.append("text")
    if "tabular" in modalities and examples.tabular and not any(
            values[index].strip() for values in examples.tabular.values()):
        missing.append("tabular")
    return missing


def parse_number(value: str) -> float | None:
    """A cell of a numeric column as a float, or None when it is missing."""
    text = value.strip()
    if text.lower() in MISSING_NUMBERS:
        return None
    return float(text)


def numeric_problem(value: str) -> str | None:
    try:
        number = parse_number(value)
    except ValueError:
        return f"'{_short(value)}' is not a number"
    if number is not None and not math.isfinite(number):
        return f"'{_short(value)}' is not a finite number"
    return None


def _short(value: str, limit: int = 40) -> str:
    value = value.strip()
    return value if len(value) <= limit else value[:limit] + "..."


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
