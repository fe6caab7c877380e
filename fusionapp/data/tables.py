"""A table argument -> its files (one file, a folder of shards, or a glob) and its cells in chunks of
rows, for the columns a run uses. Formats are fusionapp.data.formats'."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from fusionapp.data.formats import file_kind, is_shard_file, iter_columns, read_header
from fusionapp.errors import FusionError

CHUNK_ROWS = 100_000
_GLOB_CHARS = "*?["


@dataclass
class Table:
    """Some rows of a table: pyarrow string columns (missing cells are ""). `first_row` is the
    1-based number of the first of them in the whole table."""

    path: str
    columns: list[str]  # the header: every column of the table
    cells: dict  # name -> pyarrow string array (or chunked array), for the columns read
    first_row: int = 1
    file: str = ""  # the file (shard) these rows come from

    def __len__(self) -> int:
        return len(next(iter(self.cells.values()))) if self.cells else 0

    def column(self, name: str, normal: str = "") -> list[str]:
        """The cells of one column as Python strings; a column of few distinct values shares one
        string object per value, so a million rows of 400 image paths cost pointers, not strings.
        `normal` "strip" trims each cell, "lower" trims and lower-cases it."""
        import pyarrow.compute as pc

        array = self.cells[name]
        if normal:
            array = pc.utf8_trim_whitespace(array)
        if normal == "lower":
            array = pc.utf8_lower(array)
        return column_list(array)

    @property
    def rows(self) -> list[dict[str, str]]:
        """The rows as dicts (small tables: tests and tools)."""
        names = list(self.cells)
        columns = [self.column(name) for name in names]
        return [dict(zip(names, values)) for values in zip(*columns)]


def column_list(array) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        return [cell for chunk in array.chunks for cell in column_list(chunk)]
    if len(array) > 1000:
        encoded = pc.dictionary_encode(array)
        if len(encoded.dictionary) * 4 < len(array):
            values = np.array(encoded.dictionary.to_pylist() + [""], dtype=object)
            return values[encoded.indices.fill_null(len(values) - 1).to_numpy()].tolist()
    return array.to_pylist()


def table_files(path: str) -> list[str]:
    """The files of a table argument: a file, a folder's table files, or a glob's, sorted."""
    if any(char in path for char in _GLOB_CHARS) and not os.path.exists(path):
        found = sorted(name for name in glob.glob(os.path.expanduser(path), recursive=True) if is_shard_file(name))
        if not found:
            raise FusionError(f"{path}: no table files match")
        return found
    if not os.path.exists(path):
        raise FusionError(f"{path}: no such file")
    if os.path.isdir(path):
        found = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if is_shard_file(os.path.join(path, name)))
        if not found:
            raise FusionError(f"{path}: is a directory with no table files (.csv, .tsv, .jsonl, .parquet) in it")
        return found
    return [path]


def table_header(path: str) -> list[str]:
    """The columns of the table; every shard must have them all (others are ignored)."""
    files = table_files(path)
    header = read_header(files[0], file_kind(files[0]))
    for name in files[1:]:
        missing = [column for column in header if column not in read_header(name, file_kind(name))]
        if missing:
            raise FusionError(f"{name}: no column '{missing[0]}', which {files[0]} has "
                              "(every shard of a table has the same columns)")
    return header


def iter_table(path: str, names: list[str] | None = None, chunk_rows: int = CHUNK_ROWS,
               header: list[str] | None = None) -> Iterator[Table]:
    """The table in chunks of about `chunk_rows` rows (never across shards), for `names` (default:
    every column); each chunk knows its first row's number in the whole table."""
    header = header or table_header(path)
    names = list(header) if names is None else list(dict.fromkeys(names))
    first = 1
    for name in table_files(path):
        kind = file_kind(name)
        for chunk in iter_columns(name, kind, read_header(name, kind), names, chunk_rows):
            table = Table(path, header, chunk, first, name)
            first += len(table)
            if len(table):
                yield table
    if first == 1:
        raise FusionError(f"{path}: the table has a header but no rows")


def release_arrow_memory() -> None:
    """Hand the memory pyarrow's pool keeps after reading back to the system: without this a
    table's read buffers stay in the process's resident set for the whole run."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
