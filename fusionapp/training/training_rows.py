"""The rows a run learns from: read, checked, split into training and validation rows, and what the
run records of them."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from fusionapp.data.checks import drop_bad_rows, find_bad_rows
from fusionapp.data.examples import BadRow, Examples
from fusionapp.data.sources import load_examples
from fusionapp.data.splits import split_train_val, training_rows
from fusionapp.errors import FusionError
from fusionapp.preprocessing import infer_tabular_kinds
from fusionapp.preprocessing.adapt import frequent_labels
from fusionapp.preprocessing.labels import unknown_label_counts
from fusionapp.preprocessing.raw_values import numeric_values
from fusionapp.settings import RunSettings


@dataclass
class TrainingRows:
    examples: Examples  # the test split's rows of the source (none without one)
    train: Examples
    val: Examples
    skipped: list[BadRow]
    tabular_kinds: dict[str, str]


def load_rows(data: str, settings: RunSettings, say, clock=None) -> tuple[TrainingRows, RunSettings]:
    """Read and check `data`, split it, and resolve the settings for the modalities it has
    (`clock`, a StageClock, times the reading and the checks)."""
    columns, training = settings.columns, settings.training
    requested = settings.model.modalities or None
    # Training never writes ids: the id column is left unread.
    examples = load_examples(data, columns, image_root=settings.image_root, need_label=True, modalities=requested,
                             with_ids=False, sample=training.sample, seed=training.seed)
    if training.sample:
        say(f"Training on a seeded sample of {len(examples)} rows of {examples.source} (--sample)")
    modalities = requested or examples.modalities
    if "tabular" in modalities and not columns.tabular:
        raise FusionError("--modalities tabular needs the tabular columns named with --tabular-col")
    settings = settings.resolved(modalities)
    if clock is not None:
        clock.lap("read")
    label_sep = columns.label_sep if settings.model.multi_label else None
    candidates = training_rows(examples)
    kinds = (infer_tabular_kinds({name: candidates.tabular[name] for name in columns.tabular_names},
                                 columns.tabular_kinds) if "tabular" in modalities else {})
    say(f"Checking {len(candidates)} rows of {examples.source} ...")
    bad_rows = find_bad_rows(candidates, columns, modalities, need_label=True, tabular_kinds=kinds,
                             label_sep=label_sep)
    checked = drop_bad_rows(candidates, bad_rows, training.on_bad_row)
    del candidates
    usable, small = drop_small_classes(checked.examples, training.min_class_rows, training.on_bad_row, columns.label,
                                       say)
    train, val = split_train_val(usable, training.val_split, training.seed, multi_label=label_sep is not None)
    # Of every row, only the test split's are needed again: the rest is let go.
    examples = examples.subset([i for i, split in enumerate(examples.splits) if split == "test"]
                               if examples.splits is not None else [])
    for part in (train, val):
        # Checked, numeric cells are numbers from here on: 4 bytes a row instead of a string; and
        # the split column has done its work.
        part.tabular.update({name: numeric_values(part.tabular[name]) for name, kind in kinds.items()
                             if kind == "numeric"})
        part.splits = None
    if clock is not None:
        clock.lap("check")
    return TrainingRows(examples, train, val, checked.skipped + small, kinds), settings


# The share of the validation rows that early stopping reads; the rest are those what is fitted
# after the network is chosen on, whose network logits the choice of epoch has not seen.
STOP_SHARE = 0.5


def stop_and_tune(labels, seed: int, multi_label: bool, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(the positions of the validation rows early stopping reads, those the post-hoc parts are
    chosen on): seeded halves, each class's rows dealt alternately between them (label sets: at
    random), so both halves hold every class the rows have. The first holds a multiple of
    `multiple` rows (the replicas that share each validation batch: a batch they cannot share
    evenly fails under tf.distribute), the rows left over going to the second."""
    stop, tune = _halves(labels, np.random.default_rng([seed, 7]), multi_label)
    spare = len(stop) % multiple if len(stop) >= multiple else 0
    if spare:
        stop, tune = stop[:-spare], np.sort(np.concatenate([tune, stop[-spare:]]))
    return stop, tune


def held_for_selection(labels, seed: int, multi_label: bool, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(the positions of the validation rows a search keeps for choosing among its trials and
    ensembling them, the rest): about `share` of each class's rows (label sets: of the rows), seeded.
    No trial sees the first, neither to stop nor to fit what follows its network."""
    rng = np.random.default_rng([seed, 11])
    if multi_label:
        order = rng.permutation(len(labels))
        cut = int(round(len(labels) * share))
        return np.sort(order[:cut]), np.sort(order[cut:])
    held = []
    by_class = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    for label in sorted(by_class):
        positions = rng.permutation(by_class[label])
        held += list(positions[:int(len(positions) * share + rng.random())])  # rounded at random
    held = np.sort(np.asarray(held, dtype=int))
    return held, np.setdiff1d(np.arange(len(labels)), held)


def _halves(labels, rng, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    if multi_label:
        order = rng.permutation(len(labels))
        cut = int(round(len(labels) * STOP_SHARE))
        return np.sort(order[:cut]), np.sort(order[cut:])
    stop, tune = [], []
    by_class = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    for label in sorted(by_class):
        positions = rng.permutation(by_class[label])
        first = int(rng.integers(2))  # which half a class's odd row goes to
        stop += list(positions[first::2])
        tune += list(positions[1 - first::2])
    return np.sort(np.asarray(stop, dtype=int)), np.sort(np.asarray(tune, dtype=int))


# A class with fewer training rows than this is named before training: hard to learn, and under
# balanced class weights each of its rows weighs enough to make the training loss swing.
FEW_ROWS = 5


def drop_small_classes(examples: Examples, min_rows: int, on_bad_row: str, label_column: str,
                       say) -> tuple[Examples, list[BadRow]]:
    """(`examples` without the classes of fewer than `min_rows` training rows, their rows as bad rows);
    a FusionError naming them instead with --on-bad-row error. A class's training rows: its rows of
    the train split, or every row of it when there is no split column."""
    if not min_rows:
        return examples, []
    trainable = examples.labels if examples.splits is None else \
        [label for label, split in zip(examples.labels, examples.splits) if split == "train"]
    counts = Counter(trainable)
    small = sorted(label for label in set(examples.labels) if counts[label] < min_rows)
    if not small:
        return examples, []
    named = ", ".join(f"{label} ({counts[label]})" for label in small)
    if on_bad_row == "error":
        raise FusionError(f"{examples.source}: classes with fewer than {min_rows} training rows (--min-class-rows): "
                          f"{named}")
    dropped = set(small)
    keep = [i for i, label in enumerate(examples.labels) if label not in dropped]
    bad = [BadRow(int(examples.row_numbers[i]), label_column,
                  f"class '{label}' has {counts[label]} training rows, fewer than --min-class-rows {min_rows}")
           for i, label in enumerate(examples.labels) if label in dropped]
    say(f"Dropped {len(bad)} rows of {len(small)} classes with fewer than {min_rows} training rows "
        f"(--min-class-rows): {named}")
    return examples.subset(keep), bad


def small_class_notes(rows: TrainingRows, say) -> None:
    """Name the classes with few training rows, and those no validation row holds."""
    counts, val_counts = Counter(rows.train.labels), Counter(rows.val.labels)
    few = [f"{label} ({count})" for label, count in sorted(counts.items()) if count < FEW_ROWS]
    if few:
        say(f"Warning: {len(few)} classes have fewer than {FEW_ROWS} training rows: {', '.join(few)}. They are hard "
            "to learn, and balanced class weights make each of their rows weigh heavily; --min-class-rows N "
            "drops the classes of fewer than N")
    unscored = sorted(label for label in counts if not val_counts[label])
    if unscored:
        say(f"Warning: no validation rows of {', '.join(unscored)}: validation scores leave them out, and what is "
            "tuned on validation rows (the blend, offsets, temperature) never sees them")


def drop_unseen_labels(rows: TrainingRows, class_names, label_column: str) -> TrainingRows:
    """Validation rows whose label never occurs in training cannot be scored; they are skipped.
    (Label sets keep their rows: labels the model does not know are left out where they are scored.)"""
    known = set(class_names)
    keep, unseen = [], []
    for i, label in enumerate(rows.val.labels):
        if label in known:
            keep.append(i)
        else:
            unseen.append(BadRow(int(rows.val.row_numbers[i]), label_column,
                                 f"label '{label}' occurs only in validation rows, not in training"))
    if len(keep) == 0:
        raise FusionError(f"{rows.examples.source}: no usable validation rows")
    return dataclasses.replace(rows, val=rows.val.subset(keep), skipped=rows.skipped + unseen)


class LabelSetsRecord(TypedDict):
    """config.json's "label_sets" (a multi-label run)."""

    label_sep: str  # what joins a cell's labels
    min_label_count: int  # a label on fewer training rows is left out
    dropped_labels: dict[str, int]  # those left out, with their counts
    train_label_counts: dict[str, int]
    train_rows_without_labels: int
    labels_per_train_row: float  # the mean
    val_unknown_labels: dict[str, int]  # validation labels the model does not know, with their counts


def label_summary(rows: TrainingRows, preprocessor, min_count: int, say) -> LabelSetsRecord:
    """What config.json records of a multi-label run's label sets, and the rare labels left out."""
    sep = preprocessor.label_sep
    _, dropped = frequent_labels(rows.train.labels, sep, min_count)
    if dropped:
        say(f"Dropped {len(dropped)} labels found on fewer than {min_count} training rows (--min-label-count): "
            + ", ".join(f"{label} ({count})" for label, count in list(dropped.items())[:10])
            + (", ..." if len(dropped) > 10 else ""))
    targets = preprocessor.label_targets(rows.train.labels)
    return LabelSetsRecord(label_sep=sep, min_label_count=min_count, dropped_labels=dropped,
                           train_label_counts=dict(zip(preprocessor.class_names, map(int, targets.sum(axis=0)))),
                           train_rows_without_labels=int((targets.sum(axis=1) == 0).sum()),
                           labels_per_train_row=float(targets.sum(axis=1).mean()),
                           val_unknown_labels=unknown_label_counts(rows.val.labels, sep, preprocessor.class_names))


def usable_test_rows(examples: Examples, columns, preprocessor) -> tuple[Examples, list[BadRow]]:
    """The usable rows of the `test` split, and its bad ones (none of them stops the run)."""
    test = examples.select_split("test")
    bad_rows = find_bad_rows(test, columns, preprocessor.modalities, need_label=True,
                             known_labels=preprocessor.class_names, tabular_kinds=preprocessor.tabular_kinds,
                             label_sep=preprocessor.label_sep)
    bad = {row.row for row in bad_rows}
    return test.subset([i for i, row in enumerate(test.row_numbers) if int(row) not in bad]), bad_rows
