"""The audit's passes over a table after the first: reading the rows of a sample, every row a chunk
at a time, the rows the page shows; and the features fitted on the sample."""

from __future__ import annotations

import numpy as np

from fusionapp.audit.features import Featurizer
from fusionapp.audit.request import AuditRequest
from fusionapp.audit.signals import TableSignals
from fusionapp.data.examples import Examples, join_examples
from fusionapp.data.sources import iter_examples
from fusionapp.preprocessing import infer_tabular_kinds
from fusionapp.settings import Columns

ROWS_AT_ONCE = 10_000


def table_chunks(request: AuditRequest, columns: Columns, modalities, with_labels: bool):
    """The table's rows, a chunk at a time, with `modalities` (None: all it has)."""
    return iter_examples(request.data, columns, image_root=request.image_root, need_label=with_labels,
                         modalities=None if modalities is None else tuple(modalities))


def tabular_kinds(request, columns: Columns, signals: TableSignals, run) -> dict[str, str]:
    if "tabular" not in signals.modalities:
        return {}
    if run is not None:
        return dict(run.preprocessor.tabular_kinds)
    cells = {name: [] for name in columns.tabular_names}
    for examples in table_chunks(request, columns, ("tabular",), with_labels=False):
        for name in cells:
            cells[name].extend(examples.tabular[name][:1000 - len(cells[name])])
        if all(len(values) >= 1000 for values in cells.values()):
            break
    return infer_tabular_kinds(cells, columns.tabular_kinds)


def _read_rows(request, columns: Columns, signals: TableSignals, positions: np.ndarray):
    """The Examples (texts and tabular cells) of the rows at `positions` of the table, in one pass."""
    return rows_at(request, columns, positions, [m for m in signals.modalities if m != "image"] or ["text"])


def rows_at(request, columns: Columns, positions: np.ndarray, modalities) -> Examples:
    """The Examples (of `modalities`; images as paths or bytes) of the rows at `positions`, in one pass."""
    parts, offset = [], 0
    wanted = np.asarray(positions)
    for examples in table_chunks(request, columns, modalities, with_labels=False):
        inside = wanted[(wanted >= offset) & (wanted < offset + len(examples))] - offset
        if len(inside):
            parts.append(examples.subset(inside.tolist()))
        offset += len(examples)
    return join_examples(parts)


def shown_examples(request, columns, signals: TableSignals, positions: list[int]) -> dict[int, dict]:
    """Row index -> its image (path or bytes, not decoded) and text, for the rows the page shows."""
    shown, wanted, offset = {}, np.asarray(positions, np.int64), 0
    if not len(wanted):
        return shown
    for examples in table_chunks(request, columns, signals.modalities, with_labels=False):
        inside = wanted[(wanted >= offset) & (wanted < offset + len(examples))]
        for row in inside.tolist():
            local = row - offset
            shown[row] = {"image": examples.images[local] if examples.images is not None else None,
                          "image_is_file": examples.images_are_files,
                          "text": examples.texts[local] if examples.texts is not None else None}
        offset += len(examples)
    return shown


def fitted_featurizer(request, columns, signals: TableSignals, kinds: dict[str, str], sample):
    featurizer = Featurizer(signals.modalities, kinds)
    rows = _read_rows(request, columns, signals, sample) if _reads_cells(signals) else None
    return featurizer.fit(rows, signals.thumbnails[sample], request.settings.seed), rows


def _reads_cells(signals: TableSignals) -> bool:
    return any(m in signals.modalities for m in ("text", "tabular"))


def featurised_chunks(request, columns, signals: TableSignals, featurizer: Featurizer):
    """(the rows' positions, their features, their embeddings) of every ROWS_AT_ONCE rows of the table."""
    for start, rows in _row_chunks(request, columns, signals):
        where = slice(start, start + len(rows))
        features, embedded = featurizer.transform(rows, signals.thumbnails[where], embed=True)
        yield where, features, embedded


def _row_chunks(request, columns, signals: TableSignals):
    """(offset, Examples) of every ROWS_AT_ONCE rows of the table, their texts and cells (image-only:
    placeholders): their features are held at once, a few KB a row."""
    if not _reads_cells(signals):
        for start in range(0, len(signals), ROWS_AT_ONCE):
            count = min(ROWS_AT_ONCE, len(signals) - start)
            yield start, Examples(signals.source, signals.row_numbers[start:start + count], [], None, True, None,
                                  {}, None, None)
        return
    read = [m for m in signals.modalities if m != "image"]
    offset = 0
    for examples in table_chunks(request, columns, read, with_labels=False):
        for start in range(0, len(examples), ROWS_AT_ONCE):
            yield offset + start, examples.subset(list(range(start, min(start + ROWS_AT_ONCE, len(examples)))))
        offset += len(examples)
