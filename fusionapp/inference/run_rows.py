"""Reading rows the way a trained run expects: its columns (or renamed ones), its modalities, its
checks. Shared by evaluate and predict."""

from __future__ import annotations

import dataclasses

from fusionapp.runs.load import Run
from fusionapp.settings import Columns, RunSettings
from fusionapp.settings.flat import COLUMN_FLAGS
from fusionapp.data.checks import find_bad_rows
from fusionapp.data.examples import BadRow, Examples
from fusionapp.data.sharding import Shard
from fusionapp.data.sources import iter_examples
from fusionapp.errors import FusionError


def run_columns(run: Run, overrides: dict | None = None) -> Columns:
    """The run's column names, with any the user renamed for this data (`--text-col body`)."""
    if run.config.get("settings"):
        columns = RunSettings.from_dict(run.config["settings"]).columns
    else:
        # A model.keras copied away from its run folder: default column names, and the tabular
        # columns its preprocessor names.
        columns = Columns(tabular=tuple(run.preprocessor.tabular_kinds))
    changes = {name: value for name, value in (overrides or {}).items() if value is not None}
    return dataclasses.replace(columns, **changes) if changes else columns


def iter_rows_for_run(run: Run, data: str, split: str | None, need_label: bool,
                      column_overrides: dict | None = None, image_root: str | None = None,
                      shard: Shard | None = None, sample: int = 0):
    """`data` read with the run's columns (or renamed ones) and modalities, in chunks of rows:
    (examples, their bad rows) per chunk, the split's rows only (a chunk without any is passed over)."""
    columns = run_columns(run, column_overrides)
    found, present, source = False, set(), data
    for examples in iter_examples(data, columns, image_root=run_image_root(run, image_root), need_label=need_label,
                                  modalities=run.modalities, shard=shard, sample=sample, sample_split=split):
        source = examples.source
        if split is not None:
            if examples.splits is None:
                examples.select_split(split)  # says there is no split column
            present.update(examples.splits)
            keep = [i for i, value in enumerate(examples.splits) if value == split]
            if not keep:
                continue
            examples = examples.subset(keep)
        found = True
        yield examples, check_rows(run, examples, columns, need_label)
    if not found:
        where = f" in shard {shard}" if shard else ""
        if split is None:
            raise FusionError(f"{source}: no rows{where}")
        raise FusionError(f"{source}: no rows with split '{split}'{where} (splits present: "
                          f"{', '.join(sorted(present))})")


def check_rows(run: Run, examples: Examples, columns: Columns, need_label: bool,
               model_checks: bool = True) -> list[BadRow]:
    """The bad rows among `examples` for this run (labels it knows, its tabular kinds); see
    find_bad_rows for `model_checks`."""
    return find_bad_rows(examples, columns, run.modalities, need_label=need_label,
                         known_labels=run.preprocessor.class_names if need_label else None,
                         tabular_kinds=run.preprocessor.tabular_kinds, label_sep=run.preprocessor.label_sep,
                         model_checks=model_checks)


def column_renames(flags: dict) -> dict:
    """`image_col=...`-style keyword arguments -> Columns field changes."""
    unknown = sorted(set(flags) - set(COLUMN_FLAGS))
    if unknown:
        raise TypeError(f"unexpected argument '{unknown[0]}'")
    return {COLUMN_FLAGS[key]: value for key, value in flags.items() if value is not None}


def run_image_root(run: Run, given: str | None) -> str | None:
    """The folder relative image paths resolve against: `given`, else the run's own --image-root,
    else None (each table's own folder)."""
    if given is not None or not run.config.get("settings"):
        return given
    return RunSettings.from_dict(run.config["settings"]).image_root
