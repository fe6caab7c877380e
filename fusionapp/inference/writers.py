"""Prediction tables written chunk by chunk: CSV, or Parquet when the file name says so, into a
temporary file beside the target that replaces it only once every chunk is in (an interrupted
predict leaves the previous file, or none, never half of one). "-" writes CSV to stdout, None
nowhere.

How a typed cell is spelt is decided here, once: in CSV a float with 6 decimals, a list as JSON (so
a label holding spaces or commas reads back whole), None as an empty cell; in Parquet the
probabilities and confidence are float32 as the model gave them, top_k is a list of strings, and
None is null.
"""

from __future__ import annotations

import csv
import json
import os
import sys

from fusionapp.data.formats import PARQUET_SUFFIXES
from fusionapp.errors import FusionError
from fusionapp.runs.files import follow_umask, temporary_beside

# Prediction columns by what they hold in Parquet; any other column is a string.
_FLOAT_PREFIXES = ("prob_", "confidence")
_LIST_COLUMNS = ("top_k",)


def csv_cell(value) -> str:
    """A typed cell as CSV text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _parquet_type(name: str, types: dict[str, str]):
    """The Arrow type of a typed column (`types`: column -> Arrow type name, else a prediction
    column's); None for a column of strings."""
    import pyarrow as pa

    if name in types:
        return getattr(pa, types[name])()
    if name in _LIST_COLUMNS:
        return pa.list_(pa.string())
    return pa.float32() if name.startswith(_FLOAT_PREFIXES) else None


class TableWriter:
    def __init__(self, path: str | None, types: dict[str, str] | None = None):
        self.path = path
        self.types = types or {}
        self.parquet = path not in ("-", None) and path.lower().endswith(PARQUET_SUFFIXES)
        self.header = None
        self._writer = None
        self._handle = None
        self._temp = None
        self.rows = 0

    def __enter__(self):
        if self.path not in ("-", None):
            descriptor, self._temp = temporary_beside(self.path, suffix=".part")
            os.close(descriptor)
        return self

    def write(self, header: list[str], rows: list[list]) -> None:
        if self.header is None:
            self.header = header
            self._open()
        if self.path is None:
            pass
        elif self.parquet:
            self._write_parquet(rows)
        else:
            self._writer.writerows([[csv_cell(value) for value in row] for row in rows])
        self.rows += len(rows)

    def _open(self):
        if self.parquet or self.path is None:
            return
        self._handle = sys.stdout if self.path == "-" else open(self._temp, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self._writer.writerow(self.header)

    def _write_parquet(self, rows):
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(zip(*rows)) if rows else [[] for _ in self.header]
        types = [_parquet_type(name, self.types) for name in self.header]
        arrays = [pa.array(list(column), kind) if kind is not None
                  else pa.array([None if value is None else str(value) for value in column], pa.string())
                  for kind, column in zip(types, columns)]
        table = pa.Table.from_arrays(arrays, names=self.header)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._temp, table.schema)
        self._writer.write_table(table)

    def __exit__(self, kind, error, trace):
        if self.path in ("-", None):
            sys.stdout.flush()
            return False
        try:
            if self.parquet and self._writer is not None:
                self._writer.close()
            elif self._handle is not None:
                self._handle.close()
            if kind is None:
                if self.header is None:
                    raise FusionError(f"{self.path}: nothing to write")
                follow_umask(self._temp)
                os.replace(self._temp, self.path)
        finally:
            if os.path.exists(self._temp):
                os.remove(self._temp)
        return False
