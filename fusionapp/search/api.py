"""`fusionapp.train` and `fusionapp train`: one model as its settings describe it
(fusionapp.training.train), or with a time limit the search for the best one (run_search)."""

from __future__ import annotations

import dataclasses
import os

from fusionapp.data.sources import data_label
from fusionapp.errors import FusionError
from fusionapp.runs import files, layout
from fusionapp.search.run_search import search
from fusionapp.settings import RunSettings, apply_flat
from fusionapp.settings.resume import recorded_path
from fusionapp.settings.search import SEARCH_NAMES, search_settings
from fusionapp.training.request import check_pretrained_models
from fusionapp.training.train import new_search_run
from fusionapp.training.train import train as train_one


def train(data: object = None, out: str | None = None, *, resume: bool = False, overwrite: bool = False, verbose: int = 1,
          settings: RunSettings | None = None, started: float | None = None, **flat: object) -> str:
    """Train a classifier and save its run folder; with `time_limit`, search for the best model for
    the data within that wall time and save the ensemble of its best trials as the run.

    Args:
        data: A table (CSV, TSV, JSON Lines, Parquet; a folder or glob of shards), `tfds:NAME[:SPLIT]`,
            or a pandas DataFrame or pyarrow Table; None trains on the demo set, creating it first.
        out: The run folder; None: a new folder under checkpoints/.
        resume: Continue the interrupted run, or search, in `out` (a search keeps its finished
            trials and runs again the one it was in; only `time_limit` and `search_storage` may be
            given with it).
        overwrite: Replace the run already in `out`.
        verbose: 0 prints nothing; 1 prints progress, one line per trial, and the reports.
        settings: Checked RunSettings; the flat names below are applied on top of them.
        started: When the time limit started (time.time()); None: now. The CLI passes its
            process's start, so the limit counts TensorFlow's import.
        **flat: Settings by their flat names, as fusionapp.training.train takes them, and the
            search's (fusionapp.settings.search): `time_limit` ("20m", "1h", "900s" or seconds),
            `preset` ("fast", "balanced", "best"), `search_storage` (an Optuna storage URL),
            `search_text_backbone` and `search_image_backbone` (candidate pretrained models).

    Returns:
        The run folder: one model's, or the search's ensemble's, which every command and
        fusionapp.load_model take alike.

    Raises:
        fusionapp.settings.SettingError: A value a setting cannot take.
        fusionapp.settings.NotApplicable: A setting given where it does not apply.
        fusionapp.errors.FusionError: A missing or unreadable table, column or model, or a search
            in which no trial finished within the limit, in one line.
    """
    searching = search_settings(flat)
    given_search = [name for name in SEARCH_NAMES if flat.get(name) is not None]
    flat = {name: value for name, value in flat.items() if name not in SEARCH_NAMES}
    if resume and out is not None and os.path.exists(os.path.join(out, layout.SEARCH_DIR, layout.SEARCH_FILE)):
        changed = [name for name in (*given_search, *flat) if name not in ("time_limit", "search_storage")]
        if changed or settings is not None:
            name = (changed or ["settings"])[0].replace("_", "-")
            raise FusionError(f"--resume continues the search in {out} with the settings it recorded: --{name} "
                              "cannot change them (give only --time-limit and --search-storage)")
        return _resume_search(data, out, searching, verbose, started)
    if not searching.searching:
        return train_one(data, out, resume=resume, overwrite=overwrite, verbose=verbose, settings=settings, **flat)
    if resume:
        raise FusionError(f"{out}: no search to resume (no {layout.SEARCH_DIR}/{layout.SEARCH_FILE}); leave out "
                          "--time-limit to resume a run, or search into a new --out")
    data, out, run_settings, asked = new_search_run(data, out, overwrite, verbose, settings, flat)
    searching = dataclasses.replace(searching, search_text_backbone=tuple(
        recorded_path("text_backbone", candidate) for candidate in searching.search_text_backbone))
    for candidate in searching.search_text_backbone:  # each found and readable before anything is written
        check_pretrained_models(apply_flat(run_settings, {"text_backbone": candidate}))
    return search(data, out, run_settings, searching, asked, False, overwrite, verbose, started)


def _resume_search(data, out: str, searching, verbose: int, started: float | None) -> str:
    recorded = files.read_json(os.path.join(out, layout.SEARCH_DIR, layout.SEARCH_FILE))
    if data is not None and data_label(data) != recorded["data"]:
        raise FusionError(f"--resume continues the search on the data it started with ({recorded['data']}), not "
                          f"{data}; leave DATA out, or search into a new --out")
    limit = searching.time_limit or recorded["search_settings"]["time_limit"]
    return search(recorded["data"], out, RunSettings(), dataclasses.replace(searching, time_limit=limit), (), True,
                  False, verbose, started)
