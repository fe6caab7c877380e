"""The whole network cross-fitted within `--time-limit`: each fold a search (`train --time-limit`,
preset fast) on the other folds' rows, less those the linear model's first round flagged, which then
predicts its own fold. Its out-of-fold probabilities are averaged with the linear model's, so a
label is doubted where both models, which err differently, doubt it.

The folds share what is left of the limit evenly; a fold that cannot have SHORTEST_FOLD_S seconds
is not started, and the audit goes on with the linear model alone (a fold that fails does the same).
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from fusionapp.audit.passes import rows_at
from fusionapp.errors import FusionError
from fusionapp.inference.predict import predict
from fusionapp.search.api import train
from fusionapp.settings import Columns

# Seconds below which a fold's search would not finish one trial worth reading.
SHORTEST_FOLD_S = 20.0
# Seconds of the limit kept for what follows the network: duplicates, outliers and the reports.
AFTER_NETWORK_S = 15.0
# The share of a fold's training rows its search stops and chooses on.
VAL_SHARE = 0.2
# Column names of the tables handed to train and predict, apart from the tabular ones.
IMAGE, TEXT, LABEL, SPLIT = "__audit_image", "__audit_text", "__audit_label", "__audit_split"


def network_probabilities(request, columns: Columns, labels, sample: np.ndarray, fit, modalities, deadline: float,
                          say) -> np.ndarray | None:
    """[len(sample), classes]: each sampled row's probabilities from a network that did not learn
    from it; None where the time left cannot hold every fold (the audit then keeps the linear model's)."""
    folds = int(fit.fold_of.max()) + 1
    if (deadline - AFTER_NETWORK_S - time.time()) / folds < SHORTEST_FOLD_S:
        say(f"--time-limit leaves under {SHORTEST_FOLD_S:.0f} s a fold for the network: the linear model alone")
        return None
    rows = rows_at(request, columns, sample, modalities)
    names = labels.class_names
    cells = _label_cells(labels, sample, columns.label_sep)
    rng = np.random.default_rng(request.settings.seed)
    probabilities = np.zeros((len(sample), len(names)), np.float32)
    with tempfile.TemporaryDirectory(prefix="fusionapp-audit-") as work:
        for fold in range(folds):
            budget = (deadline - AFTER_NETWORK_S - time.time()) / (folds - fold)
            if budget < SHORTEST_FOLD_S:
                say(f"Fold {fold + 1} of the network would get {budget:.0f} s: the linear model alone")
                return None
            say(f"Cross-fitting the network, fold {fold + 1} of {folds}: a search of {budget:.0f} s ...")
            inside = np.flatnonzero((fit.fold_of != fold) & fit.learnt_from)
            splits = np.where(rng.random(len(inside)) < VAL_SHARE, "val", "train")
            held = np.flatnonzero(fit.fold_of == fold)
            try:
                run = train(_table(rows.subset(inside), [cells[i] for i in inside], splits.tolist()),
                            os.path.join(work, f"fold{fold}"), time_limit=budget, preset="fast", verbose=0,
                            **_flags(columns, labels, rows))
                answered = predict(run, _table(rows.subset(held), None, None), verbose=0)
            except FusionError as error:
                say(f"Fold {fold + 1} of the network failed ({error}): the linear model alone")
                return None
            probabilities[held] = _class_probabilities(answered, names)
    return probabilities


def _label_cells(labels, sample: np.ndarray, separator: str) -> list[str]:
    if labels.matrix is None:
        return [labels.class_names[c] for c in labels.classes[sample]]
    return [separator.join(labels.class_names[k] for k in np.flatnonzero(row)) for row in labels.matrix[sample]]


def _flags(columns: Columns, labels, rows) -> dict:
    """train's column flags for _table's columns, and the modalities it holds."""
    flags = {"label_col": LABEL, "split_col": SPLIT, "modalities": rows.modalities}
    if rows.images is not None:
        flags["image_col"] = IMAGE
    if rows.texts is not None:
        flags["text_col"] = TEXT
    if rows.tabular:
        flags["tabular_col"] = tuple(columns.tabular)
    if labels.matrix is not None:
        flags.update(multi_label=True, label_sep=columns.label_sep)
    return flags


def _table(rows, cells: list[str] | None, splits: list[str] | None):
    """The rows as a pyarrow Table train and predict read: images as paths or bytes, as the audit read them."""
    import pyarrow as pa

    data = {}
    if rows.images is not None:
        data[IMAGE] = list(rows.images)
    if rows.texts is not None:
        data[TEXT] = list(rows.texts)
    data.update({name: list(values) for name, values in rows.tabular.items()})
    if cells is not None:
        data[LABEL], data[SPLIT] = cells, splits
    return pa.table(data)


def _class_probabilities(answered, names: list[str]) -> np.ndarray:
    """The prediction table's prob_<class> columns in the audit's class order: 0 for a class the
    fold's training rows lacked, NaN for a row the network could not read."""
    found = set(answered.column_names)
    columns = [answered.column(f"prob_{name}").to_numpy(zero_copy_only=False).astype(np.float32)
               if f"prob_{name}" in found else np.zeros(answered.num_rows, np.float32) for name in names]
    return np.stack(columns, axis=1)
