"""One table file (CSV / TSV, JSON Lines or Parquet) -> its header, and its cells as pyarrow string
columns, read in chunks and only for the columns asked for. Every cell comes out as text; a
missing cell is the empty string.

CSV and Parquet are read by pyarrow (no Python object per cell). A CSV pyarrow refuses (rows of
uneven length, bytes that are not UTF-8) is read again by Python's csv module, which tolerates
short rows and names the line that is wrong.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Iterator

from fusionapp.errors import FusionError

# Text cells of a few MB (pasted documents, clinical notes) are legitimate; csv's default limit
# of 128 KB would reject them with an obscure error.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt") + JSONL_SUFFIXES + PARQUET_SUFFIXES
_CSV_BLOCK_BYTES = 16 << 20


def file_kind(path: str) -> str:
    """parquet, jsonl or csv: Parquet by its name, JSON Lines by its first character."""
    if path.lower().endswith(PARQUET_SUFFIXES):
        return "parquet"
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise FusionError(f"{path}: cannot read ({error.strerror})") from error
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise FusionError(f"{path}: the file is empty")
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def read_header(path: str, kind: str) -> list[str]:
    """The column names of one table file, checked (none empty, none twice)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            header = list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as error:  # noqa: BLE001 - any reader failure is the user's file
            raise FusionError(f"{path}: not a readable Parquet file ({_first_line(error)})") from None
    elif kind == "jsonl":
        header = list(_jsonl_columns(path)[0])
    else:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            try:
                header = [name.strip() for name in next(csv.reader(handle, delimiter=_delimiter(path)))]
            except (StopIteration, csv.Error):
                raise FusionError(f"{path}: the file is empty") from None
    check_header(path, header)
    return header


def iter_columns(path: str, kind: str, header: list[str], names: list[str],
                 chunk_rows: int) -> Iterator[dict]:
    """Chunks of about `chunk_rows` rows: {name: pyarrow string array}, for `names` only; rows whose
    every asked-for cell is blank are left out (a trailing newline too many, a line of commas)."""
    if kind == "parquet":
        chunks = _parquet_chunks(path, names, chunk_rows)
    elif kind == "jsonl":
        chunks = _python_chunks(_jsonl_columns(path)[1], names, chunk_rows)
    else:
        chunks = _csv_chunks(path, header, names, chunk_rows)
    for chunk in chunks:
        yield _without_blank_rows(chunk)


def _csv_chunks(path, header, names, chunk_rows):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=_CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=_delimiter(path), newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header}, include_columns=names,
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    pending, held, given = [], 0, 0
    try:
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        for batch in reader:
            pending.append(batch)
            held += batch.num_rows
            if held >= chunk_rows:
                yield _batches_to_columns(pending, names)
                pending, held, given = [], 0, given + held
    except (pa.ArrowInvalid, UnicodeDecodeError):
        # Uneven rows or bad bytes: Python's reader says which line, or reads short rows as
        # padded with empty cells. Only chunks not yet given out are read again.
        yield from _python_chunks(_csv_rows_python(path, header, names), names, chunk_rows, skip=given)
        return
    if pending:
        yield _batches_to_columns(pending, names)


def _batches_to_columns(batches, names) -> dict:
    import pyarrow as pa

    table = pa.Table.from_batches(batches)
    return {name: table.column(name).combine_chunks() for name in names}


def _csv_rows_python(path, header, names):
    """(The rows of `names` as lists, their count), by Python's csv module: the slow path."""
    try:
        with open(path, "rb") as handle:
            content = handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FusionError(f"{path}: not UTF-8 text (byte {error.start}); save the table as UTF-8") from error
    positions = [header.index(name) for name in names]
    reader = csv.reader(content.splitlines(keepends=True), delimiter=_delimiter(path))
    columns = {name: [] for name in names}
    try:
        next(reader)
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue
            for name, position in zip(names, positions):
                columns[name].append(record[position] if position < len(record) else "")
    except csv.Error as error:
        raise FusionError(f"{path} line {reader.line_num}: not valid CSV ({error})") from error
    return columns


def _python_chunks(columns: dict, names, chunk_rows, skip: int = 0):
    """Python lists of cells -> chunks of pyarrow arrays, from row `skip` on (the rows pyarrow
    gave out before it gave up are not given again)."""
    import pyarrow as pa

    count = len(next(iter(columns.values()))) if columns else 0
    for offset in range(min(skip, count), count, chunk_rows):
        yield {name: pa.array(columns.get(name, [""] * count)[offset:offset + chunk_rows], pa.string())
               for name in names}


def _parquet_chunks(path, names, chunk_rows):
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=names):
            yield {name: as_strings(batch.column(name)) for name in names}
    except FusionError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file is the user's
        raise FusionError(f"{path}: not a readable Parquet file ({_first_line(error)})") from None


def as_strings(array):
    """A pyarrow array of any type as strings, as a table cell reads: null -> "", booleans as
    true/false, lists and structs as JSON."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        strings = array.cast(pa.string())
    elif pa.types.is_nested(kind) or pa.types.is_binary(kind):
        strings = pa.array([cell_text(value) for value in array.to_pylist()], pa.string())
    else:
        strings = pc.cast(array, pa.string())
    return pc.fill_null(strings, "")


def _without_blank_rows(chunk: dict) -> dict:
    import pyarrow.compute as pc

    if not chunk:
        return chunk
    blank = None
    for array in chunk.values():
        empty = pc.equal(pc.utf8_trim_whitespace(array), "")
        blank = empty if blank is None else pc.and_(blank, empty)
    if not pc.any(blank).as_py():
        return chunk
    keep = pc.invert(blank)
    return {name: array.filter(keep) for name, array in chunk.items()}


def _jsonl_columns(path: str) -> tuple[dict, dict]:
    """({column: None} in order of first appearance, {column: cells}) of a JSON Lines file."""
    columns: dict[str, list[str]] = {}
    count = 0
    try:
        handle = open(path, encoding="utf-8-sig")
        with handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise FusionError(f"{path} line {line_number}: not valid JSON ({error.msg})") from error
                if not isinstance(record, dict):
                    raise FusionError(f"{path} line {line_number}: expected a JSON object per line")
                for key, value in record.items():
                    text = cell_text(value)
                    if not _encodable(text) or not _encodable(str(key)):
                        raise FusionError(f"{path} line {line_number}: holds text that is not valid Unicode "
                                          "(a lone surrogate escape)")
                    columns.setdefault(str(key), [""] * count).append(text)
                count += 1
                for cells in columns.values():
                    if len(cells) < count:
                        cells.append("")
    except UnicodeDecodeError as error:
        raise FusionError(f"{path}: not UTF-8 text (byte {error.start}); save the table as UTF-8") from error
    return dict.fromkeys(columns), columns


def cell_text(value) -> str:
    """A JSON value as a table cell: null -> "", booleans -> true/false, objects and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_header(path: str, header: list[str]) -> None:
    seen = set()
    for name in header:
        if not name:
            raise FusionError(f"{path}: the header has an empty column name")
        if name in seen:
            raise FusionError(f"{path}: column '{name}' appears twice in the header")
        seen.add(name)


def _delimiter(path: str) -> str:
    return "\t" if path.lower().endswith(".tsv") else ","


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def is_table_file(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(TABLE_SUFFIXES)
