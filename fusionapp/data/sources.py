"""A data argument (a table path or `tfds:NAME[:SPLIT]`) -> Examples, checking that the columns exist."""

from __future__ import annotations

import os

import numpy as np

from fusionapp.settings import Columns
from fusionapp.data.examples import Examples, default_modalities
from fusionapp.errors import FusionError


def load_examples(data: str, columns: Columns, image_root: str | None = None, need_label: bool = True,
                  modalities=None) -> Examples:
    """Read a table path or `tfds:NAME[:SPLIT]` into Examples.

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


def _resolve(path: str, root: str) -> str:
    if not path:
        return ""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def data_fingerprint(data: str) -> dict | None:
    """Each table file's size and modification time (nanoseconds), to tell whether it changed; None
    for a TFDS source, which TFDS versions itself."""
    path = os.path.abspath(data)
    if data.startswith("tfds:") or not os.path.isfile(path):
        return None
    info = os.stat(path)
    return {path: [info.st_size, info.st_mtime_ns]}
