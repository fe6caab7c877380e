"""`train --time-limit`: read and check the rows once, hold a share of the validation rows out of
every trial, run trials until the budget says stop, wait for the trials other processes run, then
save the ensemble, the leaderboard and the plots as the run. `join_search` runs trials of a search
another process leads (`fusionapp search-join`)."""

from __future__ import annotations

import dataclasses
import os
import time
import uuid

import numpy as np

from fusionapp.console import printer
from fusionapp.data.frames import FRAME_NAMES
from fusionapp.data.sources import data_fingerprint, data_label
from fusionapp.errors import FusionError
from fusionapp.preprocessing.adapt import frequent_labels
from fusionapp.preprocessing.labels import label_matrix
from fusionapp.runs import files, layout
from fusionapp.search.budget import Budget
from fusionapp.search.ensemble_run import build_ensemble
from fusionapp.search.leaderboard import save_search_plots, write_leaderboard
from fusionapp.search.space import CANDIDATES, PRESETS, trial_settings
from fusionapp.search.study import open_study, requeue_interrupted, shown_url, storage_url, trials_of
from fusionapp.search.trials import SearchContext, process_name, run_trials
from fusionapp.settings import RunSettings, apply_flat, flat_value, option_of, setting_field
from fusionapp.settings.search import SearchSettings
from fusionapp.training.request import check_recorded_data
from fusionapp.training.strategies import make_placement
from fusionapp.training.training_rows import held_for_selection, load_rows

# The share of the validation rows held out of every trial, for choosing among them and ensembling.
HELD_OUT_SHARE = 1 / 3
# How long the leader waits, at most, for trials other processes are still running.
WAIT_POLL_S = 2.0


def search(data: str, out: str, settings: RunSettings, search_settings: SearchSettings, asked: tuple[str, ...],
           resume: bool, overwrite: bool, verbose: int, started: float | None = None) -> str:
    """Search within `search_settings.time_limit` seconds of `started` (time.time(); None: now) and
    save the ensemble as the run in `out`. `asked`: the settings the user gave, kept in every trial.
    With `resume`, the search recorded in `out` goes on, with the settings it recorded."""
    say = printer(verbose)
    budget = Budget(search_settings.time_limit, started)
    with layout.run_folder(out, new_run=not resume), layout.run_lock(out):
        search_file = os.path.join(out, layout.SEARCH_DIR, layout.SEARCH_FILE)
        if resume:
            recorded = _recorded_search(search_file)
            data, settings, asked = recorded["data"], RunSettings.from_dict(recorded["settings"]), recorded["asked"]
            search_settings = dataclasses.replace(SearchSettings(**recorded["search_settings"]),
                                                  time_limit=search_settings.time_limit,
                                                  search_storage=search_settings.search_storage
                                                  or recorded["search_settings"]["search_storage"])
            study_name = recorded["study"]
        else:
            layout.prepare_run_dir(out, resume=False, overwrite=overwrite)
            study_name = f"fusionapp-{os.path.basename(os.path.abspath(out))}-{uuid.uuid4().hex[:8]}"
        placement = _placement(settings)
        url = storage_url(out, search_settings.search_storage)
        os.makedirs(os.path.join(out, layout.SEARCH_DIR), exist_ok=True)
        study = open_study(url, study_name, settings.training.seed, new=not resume)
        context = _context(data, out, settings, search_settings, tuple(asked), PRESETS[search_settings.preset],
                           placement, budget, say)
        files.write_json(search_file, {
            "data": data_label(data), "data_files": data_fingerprint(data), "settings": settings.to_dict(),
            "asked": list(asked), "search_settings": {**dataclasses.asdict(search_settings),
                                                      "search_storage": shown_url(search_settings.search_storage)},
            "study": study_name, "deadline": budget.deadline, "trials_end": budget.trials_end,
            "held_out_rows": len(context.held)})
        if resume and not search_settings.search_storage:
            again = requeue_interrupted(study, out)
            if again:
                say(f"Running again the {again} trial(s) the interrupted search left unfinished")
        if not study.get_trials(deepcopy=False):
            for values in _first_trials(context):
                study.enqueue_trial(values)
        say(f"Searching ({search_settings.preset}) for {budget.trials_left():.0f} s, then ensembling; study: "
            f"{shown_url(url)}; {len(context.held)} validation rows held out of every trial")
        run_trials(study, context)
        _wait_for_others(study, budget, say)
        weights = {}
        try:
            weights = build_ensemble(study, context, url)
        finally:  # the leaderboard says why, too, when no trial finished
            write_leaderboard(out, study, weights)
        save_search_plots(out, study)
        say(f"Saved the ensemble to {out} (leaderboard: {os.path.join(out, layout.LEADERBOARD_FILE)}); "
            f"{time.time() - budget.deadline + budget.limit_s:.0f} s of the {budget.limit_s:.0f} s limit")
    return out


def _placement(settings: RunSettings):
    placement = make_placement(settings.training.strategy)
    if placement.num_workers > 1:
        raise FusionError("--time-limit trains each trial on one machine; join more machines to the search with "
                          "`fusionapp search-join`, not --strategy multi-worker")
    return placement


def join_search(out: str, storage: str, verbose: int = 1) -> int:
    """Run trials of the search another process leads in `out` (a folder every process reaches),
    until its trials' end; the number of trials this process finished."""
    say = printer(verbose)
    search_file = os.path.join(out, layout.SEARCH_DIR, layout.SEARCH_FILE)
    if not os.path.exists(search_file):
        raise FusionError(f"{out}: no search to join (no {layout.SEARCH_DIR}/{layout.SEARCH_FILE}); start it with "
                          "`fusionapp train DATA --time-limit ... --search-storage URL --out RUN`")
    recorded = _recorded_search(search_file)
    url = storage or recorded["search_settings"]["search_storage"]
    if not url:
        raise FusionError(f"{out}: this search's study is SQLite inside the run; processes join a study in a "
                          "database server: start the search with --search-storage postgresql://...")
    settings = RunSettings.from_dict(recorded["settings"])
    search_settings = dataclasses.replace(SearchSettings(**recorded["search_settings"]), search_storage=url)
    budget = Budget(search_settings.time_limit, deadline=recorded["deadline"])
    budget.trials_end = recorded["trials_end"]
    study = open_study(url, recorded["study"], settings.training.seed + 1 + os.getpid() % 10_000, new=False)
    context = _context(recorded["data"], out, settings, search_settings, tuple(recorded["asked"]),
                       PRESETS[search_settings.preset], _placement(settings), budget, say)
    before = {trial.number for trial in study.get_trials(deepcopy=False)}
    say(f"Joined the search in {out} ({shown_url(url)}) for {budget.trials_left():.0f} s")
    run_trials(study, context)
    return sum(trial.number not in before and trial.user_attrs.get("process") == process_name()
               for trial in trials_of(study) if trial.state.name == "COMPLETE")


def _recorded_search(path: str) -> dict:
    """search.json, of a search whose rows can be read again, unchanged."""
    out = os.path.dirname(os.path.dirname(path))
    if not os.path.exists(path):
        raise FusionError(f"{out}: no search there (no {layout.SEARCH_DIR}/{layout.SEARCH_FILE})")
    recorded = files.read_json(path)
    data = recorded["data"]
    if data in FRAME_NAMES:
        raise FusionError(f"{out}: this search read an in-memory table ({data}), which no other process can read "
                          "again: search into a new --out")
    check_recorded_data(data, recorded.get("data_files"), "search run",
                        "its trials and held-out rows must see the rows it started with: search into a new --out")
    if "***" in recorded["search_settings"]["search_storage"]:
        recorded["search_settings"]["search_storage"] = ""  # the password is not recorded: --search-storage gives it
    return recorded


def _context(data, out, settings, search_settings, asked, preset, placement, budget, say) -> SearchContext:
    rows, resolved = load_rows(data, settings, say)
    multi_label = resolved.model.multi_label
    labels = rows.val.labels
    held, rest = held_for_selection(labels, settings.training.seed, multi_label, HELD_OUT_SHARE)
    held_rows, y_held = _targets(rows.val.subset(held), rows.train.labels, resolved)
    if len(held_rows) == 0 or len(rest) < 2:
        raise FusionError(f"{len(labels)} validation rows are too few to hold some out of the search's trials; "
                          "give more rows or a larger --val-split")
    rows = dataclasses.replace(rows, val=rows.val.subset(rest))
    return SearchContext(data, out, settings, asked, search_settings, preset, rows, held_rows, y_held,
                         resolved.model.modalities, placement, budget, say)


def _targets(held, train_labels, settings: RunSettings):
    """(the held-out rows whose labels the models know, their labels as the models' class indices or,
    label sets, a 0/1 matrix), the classes being the training rows' as adapt orders them."""
    if settings.model.multi_label:
        classes = frequent_labels(train_labels, settings.columns.label_sep, settings.training.min_label_count)[0]
        return held, label_matrix(held.labels, classes, settings.columns.label_sep)
    classes = sorted(set(train_labels))
    index = {name: i for i, name in enumerate(classes)}
    known = [i for i, label in enumerate(held.labels) if label in index]
    held = held.subset(known)
    return held, np.asarray([index[label] for label in held.labels], dtype=np.int64)


def _first_trials(context: SearchContext) -> list[dict]:
    """The first trials' values: the settings as given, "auto" ones as they resolve (the model `train`
    without --time-limit would have trained), so the search never ends below it; then the same with
    each candidate model the user named, which a few random proposals could otherwise miss."""
    first = [_as_given(context, {})]
    for name, source in CANDIDATES.items():
        if name not in context.asked:
            first += [_as_given(context, {name: model}) for model in getattr(context.search, source)]
    return first


def _as_given(context: SearchContext, chosen: dict) -> dict:
    """The values of the settings as given, with `chosen` ({flat name: value}) put in first. A value
    outside its search range is left for the sampler to propose."""
    resolved = apply_flat(context.base, chosen).resolved(context.modalities)
    _, proposed = trial_settings(context.base, context.preset, context.search, context.asked, context.modalities,
                                 lambda name, rule: flat_value(resolved, name))
    return {name: value for name, value in proposed.items()
            if name in CANDIDATES or _within(option_of(setting_field(name)).search, value)}


def _within(rule, value) -> bool:
    if rule.choices:
        return value in rule.choices
    return rule.low <= value <= rule.high


def _wait_for_others(study, budget: Budget, say) -> None:
    """Until no trial is running (other processes' trials end at the trials' end too), or the
    budget's reserve is half spent."""
    from optuna.trial import TrialState

    waited = False
    while trials_of(study, TrialState.RUNNING) and budget.left() > (budget.deadline - budget.trials_end) / 2:
        if not waited:
            say("Waiting for the trials other processes are running ...")
            waited = True
        time.sleep(WAIT_POLL_S)
