"""One table file (CSV / TSV, JSON Lines or Parquet) -> its header, and its cells as pyarrow string
columns, read in chunks and only for the columns asked for. Every cell comes out as text; a
missing cell is the empty string.

CSV and Parquet are read by pyarrow (no Python object per cell). Where pyarrow stops in a CSV (a
row of uneven length, bytes that are not UTF-8), Python's csv module carries on from the first
record not yet given out: it tolerates short rows and names the line that is wrong.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from typing import Iterator

from fusionapp.errors import FusionError

# Text cells of a few MB (pasted documents, clinical notes) are legitimate; csv's default limit
# of 128 KB would reject them with an obscure error.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

PARQUET_SUFFIXES = (".parquet", ".pq")
# What a folder or glob of shards takes: data files only, not a README.txt or a dataset_info.json.
SHARD_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson") + PARQUET_SUFFIXES
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
    """The column names of one table file, checked (none empty, none twice); remembered while the
    file keeps its size and time (a JSON Lines header takes a pass over the file)."""
    info = os.stat(path)
    return list(_header(path, kind, info.st_size, info.st_mtime_ns))


@functools.lru_cache(maxsize=256)
def _header(path: str, kind: str, size: int, mtime_ns: int) -> tuple:
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            header = list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as error:  # noqa: BLE001 - any reader failure is the user's file
            raise FusionError(f"{path}: not a readable Parquet file ({_first_line(error)})") from None
    elif kind == "jsonl":
        header = _jsonl_columns(path)
    else:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
            try:
                header = [name.strip() for name in next(csv.reader(handle, delimiter=_delimiter(path)))]
            except (StopIteration, csv.Error):
                raise FusionError(f"{path}: the file is empty") from None
    check_header(path, header)
    return tuple(header)


def iter_columns(path: str, kind: str, header: list[str], names: list[str],
                 chunk_rows: int) -> Iterator[dict]:
    """Chunks of `chunk_rows` rows (the last one shorter): {name: pyarrow string array}, for
    `names` only. CSV rows whose every cell is blank (a line of commas) are left out, as empty
    lines are; Parquet rows and JSON Lines records are all kept."""
    if kind == "parquet":
        yield from _parquet_chunks(path, names, chunk_rows)
    elif kind == "jsonl":
        yield from _jsonl_chunks(path, names, chunk_rows)
    else:
        yield from _csv_chunks(path, header, names, chunk_rows)


def _csv_chunks(path, header, names, chunk_rows):
    """pyarrow's reader, every column read so that a row is blank only when all its cells are;
    on a file it refuses (uneven rows, bytes that are not UTF-8, a row longer than a block),
    Python's reader carries on from the first record not yet given out."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=_CSV_BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=_delimiter(path), newlines_in_values=True)
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                   strings_can_be_null=False, quoted_strings_can_be_null=False)
    pending, given = None, 0  # `given`: records handed out so far, blank ones included
    try:
        for batch in pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert):
            table = pa.Table.from_batches([batch])
            pending = table if pending is None else pa.concat_tables([pending, table])
            while pending.num_rows >= chunk_rows:
                yield _csv_chunk(pending.slice(0, chunk_rows), names)
                pending, given = pending.slice(chunk_rows), given + chunk_rows
    except (pa.ArrowInvalid, UnicodeDecodeError):
        yield from _python_chunks(_csv_records(path, header, names, skip=given), names, chunk_rows)
        return
    if pending is not None and pending.num_rows:
        yield _csv_chunk(pending, names)


def _csv_chunk(table, names) -> dict:
    import pyarrow.compute as pc

    blank = None
    for column in table.columns:
        empty = pc.equal(pc.utf8_trim_whitespace(column), "")
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is not None and pc.any(blank).as_py():
        table = table.filter(pc.invert(blank))
    return {name: table.column(name) for name in names}


def _csv_records(path, header, names, skip: int):
    """Records of `names` by Python's csv module, streamed, from the `skip`-th on (counted as
    pyarrow counts: empty lines not at all, lines of blank cells too); blank records left out and
    short ones padded with empty cells."""
    positions = [header.index(name) for name in names]
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=_delimiter(path))
        try:
            next(reader)
            for record in reader:
                if not record:
                    continue
                if skip:
                    skip -= 1
                    continue
                if any(cell.strip() for cell in record):
                    yield [record[position] if position < len(record) else "" for position in positions]
        except csv.Error as error:
            raise FusionError(f"{path} line {reader.line_num}: not valid CSV ({error})") from error
        except UnicodeDecodeError as error:
            raise FusionError(f"{path} line {reader.line_num + 1}: not UTF-8 text; save the table as UTF-8") \
                from error


def _python_chunks(records, names, chunk_rows):
    """Records (lists of cells of `names`) -> chunks of pyarrow string arrays."""
    import pyarrow as pa

    def columns(block):
        return {name: pa.array(list(cells), pa.string()) for name, cells in zip(names, zip(*block))}

    block = []
    for record in records:
        block.append(record)
        if len(block) == chunk_rows:
            yield columns(block)
            block = []
    if block:
        yield columns(block)


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
    elif not (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
        # Floats, dates, decimals, lists: written as a JSON Lines cell or a request field of the
        # same value would be (1.0 stays "1.0"), so every source gives a model the same text.
        strings = pa.array([cell_text(value) for value in array.to_pylist()], pa.string())
    else:
        strings = pc.cast(array, pa.string())
    return pc.fill_null(strings, "")


def _jsonl_records(path: str):
    """Each JSON Lines record as {column: cell text}, streamed; errors name the line."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise FusionError(f"{path} line {line_number}: not valid JSON ({error.msg})") from error
                if not isinstance(record, dict):
                    raise FusionError(f"{path} line {line_number}: expected a JSON object per line")
                cells = {str(key): cell_text(value) for key, value in record.items()}
                if not all(_encodable(text) for pair in cells.items() for text in pair):
                    raise FusionError(f"{path} line {line_number}: holds text that is not valid Unicode "
                                      "(a lone surrogate escape)")
                yield cells
    except UnicodeDecodeError as error:
        raise FusionError(f"{path}: not UTF-8 text (byte {error.start}); save the table as UTF-8") from error


def _jsonl_columns(path: str) -> list[str]:
    """Every key of a JSON Lines file, in order of first appearance (one streamed pass)."""
    columns = {}
    for record in _jsonl_records(path):
        columns.update(dict.fromkeys(record))
    return list(columns)


def _jsonl_chunks(path: str, names, chunk_rows):
    return _python_chunks(([record.get(name, "") for name in names] for record in _jsonl_records(path)),
                          names, chunk_rows)


def cell_text(value) -> str:
    """A JSON value as a table cell: null -> "", booleans -> true/false, objects and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
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


def is_shard_file(path: str) -> bool:
    """A file a folder or glob of shards takes: a data file's name, not hidden."""
    return (os.path.isfile(path) and path.lower().endswith(SHARD_SUFFIXES)
            and not os.path.basename(path).startswith("."))
