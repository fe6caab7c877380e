"""Read a CSV or JSON Lines table into rows of strings, with one-line errors for broken files."""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass

from fusionapp.errors import FusionError

# Text cells of a few MB (pasted documents, clinical notes) are legitimate; csv's default limit
# of 128 KB would reject them with an obscure error.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class Table:
    """A table's rows as dicts of strings; missing cells are empty strings."""

    path: str
    columns: list[str]
    rows: list[dict[str, str]]


def read_table(path: str) -> Table:
    """Read `path` as CSV or JSON Lines, chosen by its content rather than trusting its name."""
    if not os.path.exists(path):
        raise FusionError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FusionError(f"{path}: is a directory, expected a CSV or JSON Lines table")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise FusionError(f"{path}: cannot read ({error.strerror})") from error
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FusionError(f"{path}: not UTF-8 text (byte {error.start}); save the table as UTF-8") from error
    if not content.strip():
        raise FusionError(f"{path}: the file is empty")
    if content.lstrip().startswith("{"):
        table = _parse_jsonl(path, content)
    else:
        table = _parse_csv(path, content)
    if not table.rows:
        raise FusionError(f"{path}: the table has a header but no rows")
    return table


def _parse_csv(path: str, content: str) -> Table:
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    reader = csv.reader(content.splitlines(keepends=True), delimiter=delimiter)
    try:
        header = next(reader)
        records = list(reader)
    except csv.Error as error:
        raise FusionError(f"{path} line {reader.line_num}: not valid CSV ({error})") from error
    header = [name.strip() for name in header]
    _check_header(path, header)
    rows = []
    for record in records:
        if not any(cell.strip() for cell in record):
            continue  # blank lines, often a trailing newline too many
        row = {name: (record[i] if i < len(record) else "") for i, name in enumerate(header)}
        rows.append(row)
    return Table(path, header, rows)


def _parse_jsonl(path: str, content: str) -> Table:
    rows, columns = [], {}
    for line_number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise FusionError(f"{path} line {line_number}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise FusionError(f"{path} line {line_number}: expected a JSON object per line")
        row = {str(key): cell_text(value) for key, value in record.items()}
        if not all(_encodable(text) for pair in row.items() for text in pair):
            raise FusionError(f"{path} line {line_number}: holds text that is not valid Unicode (a lone surrogate escape)")
        columns.update(dict.fromkeys(row))
        rows.append(row)
    names = list(columns)
    for row in rows:
        for name in names:
            row.setdefault(name, "")
    return Table(path, names, rows)


def cell_text(value) -> str:
    """A JSON value as a table cell: null -> "", booleans -> true/false, objects and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_header(path: str, header: list[str]) -> None:
    seen = set()
    for name in header:
        if not name:
            raise FusionError(f"{path}: the header has an empty column name")
        if name in seen:
            raise FusionError(f"{path}: column '{name}' appears twice in the header")
        seen.add(name)
