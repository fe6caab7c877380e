"""A table held in memory (a pandas DataFrame or a pyarrow Table) as a data argument of the Python
API: its cells become the strings a table file's would be, so the same checks and one-line errors
apply, and its image cells may be file paths, encoded bytes, PIL images or arrays.

pandas stays optional: it is imported only to read a DataFrame someone passed, or to hand one back.
"""

from __future__ import annotations

import io
import os

import numpy as np

from fusionapp.errors import FusionError


def is_frame(data) -> bool:
    """Whether a data argument is a table in memory rather than a path or `tfds:NAME`."""
    return data is not None and not isinstance(data, (str, os.PathLike))


# What messages and config.json call an in-memory table: a pandas one, a pyarrow one.
FRAME_NAMES = ("DataFrame", "pyarrow Table")


def frame_name(data) -> str:
    return FRAME_NAMES[0] if _is_pandas(data) else FRAME_NAMES[1]


def _is_pandas(data) -> bool:
    return type(data).__module__.split(".")[0] == "pandas"


def arrow_table(data, image_column: str | None):
    """(a pyarrow Table of every column but the images, the image cells as a Python list or None)."""
    import pyarrow as pa

    if _is_pandas(data):
        images = data[image_column].tolist() if image_column in data.columns else None
        rest = data.drop(columns=[image_column]) if images is not None else data
        try:
            table = pa.Table.from_pandas(rest.reset_index(drop=True), preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise FusionError(f"DataFrame: a column cannot be read as table cells ({error})") from None
        return table, images
    if not isinstance(data, pa.Table):
        raise FusionError(f"data: expected a table path, tfds:NAME, a pandas DataFrame or a pyarrow Table, not "
                          f"{type(data).__name__}")
    if image_column in data.column_names:
        return data.drop_columns([image_column]), data.column(image_column).to_pylist()
    return data, None


def image_cells(cells: list, root: str) -> tuple[list, bool]:
    """(the images, whether they are file paths). All paths stay paths, resolved against `root`;
    otherwise every cell becomes encoded bytes (a path's file read, a PIL image or an array written
    as PNG), "" where there is no image."""
    if all(_is_empty(cell) or isinstance(cell, str) for cell in cells):
        return [_path(cell, root) for cell in cells], True
    return [_encoded(cell, row, root) for row, cell in enumerate(cells, start=1)], False


def _is_empty(cell) -> bool:
    return cell is None or (isinstance(cell, float) and np.isnan(cell)) or (isinstance(cell, str) and not cell.strip())


def _path(cell, root: str) -> str:
    if _is_empty(cell):
        return ""
    path = os.path.expanduser(cell.strip())
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def _encoded(cell, row: int, root: str) -> bytes:
    if _is_empty(cell):
        return b""
    if isinstance(cell, (bytes, bytearray, memoryview)):
        return bytes(cell)
    if isinstance(cell, str):
        path = _path(cell, root)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as error:
            raise FusionError(f"row {row}: image {path}: {error.strerror or error}") from None
    return _png(cell, row)


def _png(cell, row: int) -> bytes:
    from PIL import Image

    try:
        image = cell if isinstance(cell, Image.Image) else Image.fromarray(np.asarray(cell))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
    except (TypeError, ValueError, OSError) as error:
        raise FusionError(f"row {row}: the image cell is neither a path, bytes, a PIL image nor an image array "
                          f"({type(cell).__name__}: {error})") from None
    return buffer.getvalue()


def as_frame(rows: list[dict], like):
    """Prediction rows as the kind of table given: a DataFrame with its index for a DataFrame, a
    pyarrow Table for a pyarrow Table."""
    if _is_pandas(like):
        import pandas as pd

        return pd.DataFrame(rows, index=like.index)
    import pyarrow as pa

    return pa.Table.from_pylist(rows)
