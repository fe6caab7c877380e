"""A data argument (a table path or `tfds:NAME[:SPLIT]`) -> Examples, checking that the columns exist."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from fusionapp.settings import Columns
from fusionapp.data.examples import Examples, default_modalities, join_examples
from fusionapp.data.formats import as_strings
from fusionapp.data.frames import arrow_table, frame_name, image_cells, is_frame
from fusionapp.data.sampling import sampled_rows
from fusionapp.data.sharding import Shard
from fusionapp.errors import FusionError
from fusionapp.data import tables
from fusionapp.data.tfds_source import load_tfds_examples


def load_examples(data: str, columns: Columns, image_root: str | None = None, need_label: bool = True,
                  modalities=None, with_ids: bool = True, sample: int = 0, seed: int = 0) -> Examples:
    """Read a table path or `tfds:NAME[:SPLIT]` into Examples.

    `modalities=None` takes every modality the data has: image and text when their columns exist,
    tabular when tabular columns were named. `with_ids=False` leaves the id column unread (ids are
    then row numbers). `sample` > 0 keeps a seeded sample of that many rows, stratified by label
    (fusionapp.data.sampling), read in one streaming pass.
    """
    if is_frame(data) or data.startswith("tfds:"):
        examples = (frame_examples(data, columns, image_root, need_label, modalities, with_ids) if is_frame(data)
                    else load_tfds_examples(data, columns, need_label=need_label, modalities=modalities))
        return _sampled_in_memory(examples, sample, seed) if sample else examples
    header, modalities, names = _columns_to_read(data, columns, need_label, modalities, with_ids)
    rows = _sample(data, header, columns, sample, seed)
    return join_examples([_kept(part, None, rows)
                          for part in _chunk_examples(data, header, names, columns, modalities, image_root)])


def iter_examples(data: str, columns: Columns, image_root: str | None = None, need_label: bool = True,
                  modalities=None, shard: Shard | None = None, chunk_rows: int | None = None, sample: int = 0,
                  seed: int = 0, sample_split: str | None = None):
    """load_examples in chunks of rows, for tables of any size; `shard` keeps one machine's share of
    the rows: N machines, each with its own share, read one table; `sample` as load_examples, drawn
    from the rows of `sample_split` alone when it is given."""
    if is_frame(data) or data.startswith("tfds:"):
        examples = load_examples(data, columns, image_root=image_root, need_label=need_label, modalities=modalities,
                                 sample=sample, seed=seed)
        yield _kept(examples, shard, None)
        return
    header, modalities, names = _columns_to_read(data, columns, need_label, modalities)
    rows = _sample(data, header, columns, sample, seed, sample_split)
    for examples in _chunk_examples(data, header, names, columns, modalities, image_root, chunk_rows):
        yield _kept(examples, shard, rows)


def _chunk_examples(data, header, names, columns, modalities, image_root, chunk_rows=None):
    """Examples of each chunk of rows, its Arrow buffers handed back as soon as it is read."""
    for table in tables.iter_table(data, names, chunk_rows or tables.CHUNK_ROWS, header=header):
        examples = table_examples(table, columns, modalities, image_root)
        del table
        tables.release_arrow_memory()
        yield examples


def _kept(examples: Examples, shard: Shard | None, rows: np.ndarray | None) -> Examples:
    """The rows of `examples` in this machine's share, and in the sample (sorted row numbers)."""
    if shard is not None:
        examples = examples.subset(shard.of_rows(examples.row_numbers))
    if rows is not None:
        examples = examples.subset(np.flatnonzero(np.isin(examples.row_numbers, rows, assume_unique=True)))
    return examples


def _sample(data: str, header: list[str], columns: Columns, size: int, seed: int,
            split: str | None = None) -> np.ndarray | None:
    """The row numbers of a `--sample` of the table (of its `split` rows, when given), streamed over
    its label and split columns alone; None for the whole table."""
    if not size:
        return None
    label = columns.label if columns.label in header else None
    split_column = columns.split if split is not None and columns.split in header else None
    read = [name for name in (label, split_column) if name] or [header[0]]

    def label_chunks():
        for table in tables.iter_table(data, read, header=header):
            numbers = np.arange(table.first_row, table.first_row + len(table))
            labels = table.column(label, "strip") if label else None
            if split_column:
                keep = np.asarray(table.column(split_column, "lower"), dtype=object) == split
                numbers, labels = numbers[keep], (np.asarray(labels, dtype=object)[keep] if label else None)
            yield numbers, labels

    return sampled_rows(label_chunks, size, seed, stratify=label is not None)


def _sampled_in_memory(examples: Examples, size: int, seed: int) -> Examples:
    stratify = examples.labels is not None
    rows = sampled_rows(lambda: iter([(examples.row_numbers, examples.labels)]), size, seed, stratify)
    return _kept(examples, None, rows)


def _columns_to_read(data: str, columns: Columns, need_label: bool, modalities, with_ids: bool = True):
    """(the table's header, the modalities, the columns to read), every needed column checked."""
    header = tables.table_header(data)
    return (header, *_checked_columns(data, header, columns, need_label, modalities, with_ids))


def _checked_columns(data: str, header: list[str], columns: Columns, need_label: bool, modalities, with_ids: bool):
    """(the modalities, the columns to read) of a table with this header; a FusionError naming a
    needed column it lacks."""
    if modalities is None:
        modalities = default_modalities(columns, header)
        if not modalities:
            raise FusionError(f"{data}: no column '{columns.image}' or '{columns.text}' and no "
                              f"--tabular-col, so there is nothing to learn from "
                              f"(columns: {', '.join(header)})")
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
        if name not in header:
            raise FusionError(f"{data}: no column '{name}' (columns: {', '.join(header)})")
    optional = [name for name in (columns.label, columns.split) + ((columns.id,) if with_ids else ())
                if name in header]
    return modalities, list(dict.fromkeys(needed + optional))


def frame_examples(frame, columns: Columns, image_root: str | None, need_label: bool, modalities,
                   with_ids: bool = True) -> Examples:
    """Examples of a pandas DataFrame or pyarrow Table, its cells read as a table file's would be;
    relative image paths resolve against `image_root`, else the working folder."""
    import pyarrow as pa

    name = frame_name(frame)
    table, images = arrow_table(frame, columns.image)
    header = table.column_names + ([columns.image] if images is not None else [])
    modalities, names = _checked_columns(name, header, columns, need_label, modalities, with_ids)
    cells = {column: as_strings(table.column(column)) for column in names if column != columns.image}
    root = image_root or os.getcwd()
    if "image" in modalities:
        images, are_files = image_cells(images, root)
        cells[columns.image] = pa.array(images if are_files else [""] * len(images), pa.string())
    examples = table_examples(tables.Table(name, header, cells), columns, modalities, root)
    if "image" in modalities and not are_files:
        examples = dataclasses.replace(examples, images=images, images_are_files=False)
    return examples


def table_examples(table, columns: Columns, modalities, image_root: str | None = None) -> Examples:
    """Examples of a Table (or a chunk of one) whose needed columns are there."""
    root = image_root if image_root is not None else _table_root(table)
    present = table.cells
    images = None
    if "image" in modalities:
        images = _resolve_many(table.column(columns.image), root)
    first = table.first_row
    numbers = np.arange(first, first + len(table))
    has_ids = columns.id in present
    return Examples(
        source=table.path,
        row_numbers=numbers,
        ids=table.column(columns.id) if has_ids else RowIds(numbers),
        images=images,
        images_are_files=True,
        texts=table.column(columns.text) if "text" in modalities else None,
        tabular={name: table.column(name) for name in columns.tabular_names} if "tabular" in modalities else {},
        labels=table.column(columns.label, "strip") if columns.label in present else None,
        splits=table.column(columns.split, "lower") if columns.split in present else None,
        has_ids=has_ids,
    )


class RowIds:
    """Row numbers as ids, made when asked for: a million rows without an id column need no million
    strings."""

    def __init__(self, numbers):
        self.numbers = numbers

    def __len__(self):
        return len(self.numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return RowIds(self.numbers[index])
        return str(int(self.numbers[index]))

    def __iter__(self):
        return (str(int(number)) for number in self.numbers)

    def pick(self, indices):
        return RowIds(self.numbers[np.asarray(indices, dtype=int)])


def _table_root(table) -> str:
    """Relative image paths are relative to the folder of the file the rows come from."""
    absolute = os.path.abspath(table.file or table.path)
    return absolute if os.path.isdir(absolute) else os.path.dirname(absolute)


def _resolve_many(paths: list[str], root: str) -> list[str]:
    """_resolve once per distinct path, the same string object for each repeat."""
    resolved = {}
    return [resolved.get(path) or resolved.setdefault(path, _resolve(path.strip(), root)) for path in paths]


def _resolve(path: str, root: str) -> str:
    if not path:
        return ""
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def data_fingerprint(data: str) -> dict | None:
    """Each table file's size and modification time (nanoseconds), to tell whether it changed; None
    for a TFDS source, which TFDS versions itself."""
    if is_frame(data) or data.startswith("tfds:"):
        return None
    try:
        names = tables.table_files(data)
    except FusionError:
        return None
    stats = {os.path.abspath(name): os.stat(name) for name in names}
    return {name: [info.st_size, info.st_mtime_ns] for name, info in stats.items()}


def data_label(data) -> str:
    """What config.json records of a data argument: a table's absolute path, `tfds:NAME[:SPLIT]`,
    or the name of an in-memory table (which a resume cannot read again)."""
    if is_frame(data):
        return frame_name(data)
    return data if data.startswith("tfds:") else os.path.abspath(data)
