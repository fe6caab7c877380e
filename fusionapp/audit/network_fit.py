"""The whole network cross-fitted within `--time-limit`: each fold a search (`train --time-limit`,
preset fast) on the other folds' rows, less those the linear model's first round flagged, which then
predicts its own fold. Its out-of-fold probabilities are averaged with the linear model's, so a
label is doubted where both models, which err differently, doubt it.

The folds share what is left of the limit evenly; where a fold cannot have SHORTEST_FOLD_S seconds
the network is left out, and the audit goes on with the linear model alone. A fold whose search fails
leaves its rows the linear model's. A class a fold's network never learnt has no probability (NaN),
so the mean keeps the linear model's there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

from fusionapp.audit.passes import rows_at
from fusionapp.inference.predict import predict
from fusionapp.search.api import train
from fusionapp.settings import Columns

# Seconds below which a fold's search would not finish one trial worth reading: the search keeps
# 20 s for its ensemble and reports, and a trial needs its data read and an epoch.
SHORTEST_FOLD_S = 30.0
# Seconds of the limit kept for what follows the network: duplicates, outliers and the reports.
AFTER_NETWORK_S = 15.0
# The share of a fold's training rows its search stops and chooses on.
VAL_SHARE = 0.2
# Column names of the tables handed to train and predict, apart from the tabular ones.
IMAGE, TEXT, LABEL, SPLIT = "__audit_image", "__audit_text", "__audit_label", "__audit_split"


def network_probabilities(request, columns: Columns, labels, sample: np.ndarray, fit, modalities, deadline: float,
                          say) -> np.ndarray | None:
    """[len(sample), classes]: each sampled row's probabilities from a network that did not learn
    from it (NaN where it has none: a fold the time left could not hold or whose search failed);
    None where no fold could start or finish (the audit then keeps the linear model's)."""
    folds = int(fit.fold_of.max()) + 1
    if (deadline - AFTER_NETWORK_S - time.time()) / folds < SHORTEST_FOLD_S:
        say(f"--time-limit leaves under {SHORTEST_FOLD_S:.0f} s a fold for the network: the linear model alone")
        return None
    rows = rows_at(request, columns, sample, modalities)
    names = labels.class_names
    cells = labels.cells(sample)
    rng = np.random.default_rng(request.settings.seed)
    probabilities = np.full((len(sample), len(names)), np.nan, np.float32)
    with tempfile.TemporaryDirectory(prefix="fusionapp-audit-") as work:
        for fold in range(folds):
            budget = (deadline - AFTER_NETWORK_S - time.time()) / (folds - fold)
            if budget < SHORTEST_FOLD_S:
                say(f"Fold {fold + 1} of the network would get {budget:.0f} s: it keeps the linear model's")
                break
            say(f"Cross-fitting the network, fold {fold + 1} of {folds}: a search of {budget:.0f} s ...")
            inside = np.flatnonzero((fit.fold_of != fold) & fit.learnt_from)
            held = np.flatnonzero(fit.fold_of == fold)
            folder = os.path.join(work, f"fold{fold}")
            table = _table(rows.subset(inside), [cells[i] for i in inside], _splits(labels, sample[inside], rng))
            try:
                run = train(table, folder, time_limit=budget, started=time.time(), preset="fast", verbose=0,
                            seed=request.settings.seed, **_flags(columns, labels, rows))
                answered = predict(run, _table(rows.subset(held), None, None), verbose=0)
            except Exception as error:  # noqa: BLE001 - the network is optional: a failure leaves the linear model's
                reason = (str(error).splitlines() or [type(error).__name__])[0]
                say(f"Fold {fold + 1} of the network failed ({reason}): its rows keep the linear model's")
                continue
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            probabilities[held] = _class_probabilities(answered, names)
    return probabilities if np.isfinite(probabilities).any() else None


def averaged(linear: np.ndarray, network: np.ndarray, multi_label: bool) -> np.ndarray:
    """The mean of both models' probabilities; the linear model's where the network has none (NaN),
    single-label rows then summing to 1 again."""
    mixed = np.where(np.isfinite(network), (linear + np.nan_to_num(network)) / 2, linear)
    return mixed if multi_label else mixed / mixed.sum(axis=1, keepdims=True)


def _splits(labels, rows: np.ndarray, rng) -> list[str]:
    """A seeded VAL_SHARE of `rows` to stop and choose on, each class keeping most of its rows to
    learn from (a class of under 1 / VAL_SHARE rows gives none); multi-label rows at random."""
    splits = np.full(len(rows), "train", dtype=object)
    if labels.matrix is not None:
        splits[rng.random(len(rows)) < VAL_SHARE] = "val"
        return splits.tolist()
    classes = labels.classes[rows]
    for c in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == c))
        splits[members[:int(VAL_SHARE * len(members))]] = "val"
    return splits.tolist()


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
        # Every label the audit scores, however rare in a fold.
        flags.update(multi_label=True, label_sep=labels.separator, min_label_count=1)  # as cells() joins them
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
    """The prediction table's prob_<class> columns in the audit's class order: NaN for a class the
    fold's training rows lacked and for a row the network could not read."""
    found = set(answered.column_names)
    columns = [answered.column(f"prob_{name}").to_numpy(zero_copy_only=False).astype(np.float32)
               if f"prob_{name}" in found else np.full(answered.num_rows, np.nan, np.float32) for name in names]
    return np.stack(columns, axis=1)
