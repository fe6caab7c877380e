"""Rows of a table, a TFDS data set or a request, held as column arrays; and those rows as the raw
inputs the preprocessor takes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fusionapp.settings import Columns
from fusionapp.errors import FusionError
from fusionapp.preprocessing.raw_values import category_values, numeric_values, tabular_key

SPLITS = ("train", "val", "test")


@dataclass
class Examples:
    """Column arrays for a set of examples; `images` holds file paths or encoded bytes ("" = none)."""

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
            if values is None:
                return None
            if hasattr(values, "pick"):
                return values.pick(indices)
            if isinstance(values, np.ndarray):
                return values[indices]
            return [values[i] for i in indices]

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

    def blanked(self, modality: str) -> "Examples":
        """The same rows with one input missing everywhere (no image, empty text, empty cells)."""
        empty = [""] * len(self)
        if modality == "image":
            return dataclasses.replace(self, images=empty)
        if modality == "text":
            return dataclasses.replace(self, texts=empty)
        return dataclasses.replace(self, tabular={name: empty for name in self.tabular})


def join_examples(parts: list) -> Examples:
    """Examples of consecutive chunks of one source as one."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def joined(name):
        values = [getattr(part, name) for part in parts]
        if values[0] is None:
            return None
        if hasattr(values[0], "pick"):  # row-number ids
            return type(values[0])(np.concatenate([value.numbers for value in values]))
        return [cell for value in values for cell in value]

    return Examples(source=first.source, row_numbers=np.concatenate([part.row_numbers for part in parts]),
                    ids=joined("ids"), images=joined("images"), images_are_files=first.images_are_files,
                    texts=joined("texts"),
                    tabular={name: [cell for part in parts for cell in part.tabular[name]] for name in first.tabular},
                    labels=joined("labels"), splits=joined("splits"), has_ids=first.has_ids)


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


def raw_columns(examples: Examples, modalities, tabular_kinds: dict[str, str], indices=None,
                read_images: bool = False) -> dict[str, np.ndarray]:
    """The rows (all, or `indices`) as the preprocessor's raw inputs, keyed as its input_specs:
    `image`, `text`, `tabular_<column>`. Images stay file paths unless `read_images`, which reads
    each file's bytes (a missing image: empty bytes)."""
    rows = examples if indices is None else examples.subset(indices)
    columns = {}
    if "image" in modalities:
        images = rows.images
        if read_images and rows.images_are_files:
            images = [_read(path) for path in images]
        columns["image"] = np.array(images if images else [], dtype=object)
    if "text" in modalities:
        columns["text"] = np.array(rows.texts, dtype=object)
    if "tabular" in modalities:
        for name, kind in tabular_kinds.items():
            cells = rows.tabular[name]
            columns[tabular_key(name)] = numeric_values(cells) if kind == "numeric" else category_values(cells)
    return columns


def _read(path: str) -> bytes:
    if not path:
        return b""
    with open(path, "rb") as handle:
        return handle.read()
