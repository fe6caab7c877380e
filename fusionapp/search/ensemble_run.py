"""The end of a search: greedy selection over the finished trials' held-out probabilities, the chosen
trials loaded as one FusionEnsemble, calibrated, scored, and saved as the run itself (model.keras,
config.json, metrics.json, test_metrics.json), so every command takes it as it takes one model."""

from __future__ import annotations

import os
import time

import numpy as np

from fusionapp.errors import FusionError
from fusionapp.evaluation.metrics import prediction_report
from fusionapp.evaluation.report_text import format_report
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.model import FusionEnsemble
from fusionapp.runs import files, layout
from fusionapp.runs.load import load_model
from fusionapp.search.selection import greedy_selection
from fusionapp.search.study import shown_url
from fusionapp.search.trials import SearchContext, finished_trials
from fusionapp.training.finish import test_report


def build_ensemble(study, context: SearchContext, storage: str) -> dict[int, float]:
    """Select, calibrate, score and save the ensemble; its weights by trial number."""
    say = context.say
    held_out = {trial.number: _held_out(context, trial) for trial in finished_trials(study)}
    finished = [trial for trial in finished_trials(study) if held_out[trial.number] is not None]
    if not finished:
        notes = [trial.user_attrs.get("note") for trial in study.get_trials(deepcopy=False)]
        first = next((note for note in notes if note), "none started")
        raise FusionError(f"{context.out}: no trial finished within --time-limit {context.search.time_limit:g}s "
                          f"(first trial: {first}); give more time, or continue with `fusionapp train --resume "
                          f"--time-limit ... --out {context.out}`")
    started = time.time()
    probabilities = [held_out[trial.number] for trial in finished]
    multi_label = np.ndim(context.y_held) == 2
    selection = greedy_selection(probabilities, context.y_held, multi_label, _ensemble_size(finished, context))
    chosen = sorted(selection.weights.items(), key=lambda item: (-item[1], item[0]))
    weights = {finished[index].number: share for index, share in chosen}
    say(f"Ensemble of {len(chosen)} of the {len(finished)} finished trials ("
        + ", ".join(f"trial {finished[index].number} x{share:.2f}" for index, share in chosen)
        + f"), held-out log loss {selection.loss:.4f}; temperature {selection.temperature:.3f}")
    members = [load_model(os.path.join(context.out, finished[index].user_attrs["run"])) for index, _ in chosen]
    ensemble = FusionEnsemble(members, [share for _, share in chosen], name="fusion_ensemble")
    ensemble.set_temperature(selection.temperature)
    if multi_label:
        ensemble.set_thresholds(selection.thresholds)
    predictions = predict_examples(ensemble, context.held)  # builds it too
    reports = {"validation": prediction_report(ensemble, context.held, predictions)}
    say(format_report(reports["validation"], title="Held-out validation rows (the ensemble was chosen on them)"))
    reports["test"] = test_report(ensemble, context.rows.examples, context.base.columns, say)
    best = finished[chosen[0][0]]
    config = files.read_json(os.path.join(context.out, best.user_attrs["run"], layout.CONFIG_FILE))
    config.update(
        ensemble={"members": [{"trial": finished[index].number, "run": finished[index].user_attrs["run"],
                               "weight": round(share, 6)} for index, share in chosen],
                  "temperature": round(selection.temperature, 6), "held_out_rows": len(context.held),
                  "held_out_log_loss": round(selection.loss, 6)},
        search_summary={"time_limit_s": context.search.time_limit, "preset": context.search.preset,
                        "storage": shown_url(storage), "trial_states": _counts(study)},
        n_val_held_out=len(context.held), status="complete")
    # The heaviest member's own post-hoc parts are its own; the ensemble's temperature is above.
    for key in ("calibration", "class_offsets", "wide"):
        config.pop(key, None)
    if multi_label:
        config["label_thresholds"] = dict(zip(ensemble.preprocessor.class_names, ensemble.thresholds.tolist()))
    files.save_model(ensemble, os.path.join(context.out, layout.MODEL_FILE))
    files.write_json(os.path.join(context.out, layout.METRICS_FILE), reports["validation"])
    if reports["test"] is not None:
        files.write_json(os.path.join(context.out, layout.TEST_METRICS_FILE), reports["test"])
    config["stage_seconds"] = {"ensemble": round(time.time() - started, 2)}
    files.write_json(os.path.join(context.out, layout.CONFIG_FILE), config)
    return weights


def _held_out(context: SearchContext, trial) -> np.ndarray | None:
    """A finished trial's probabilities on the held-out rows; None where it has none for these rows
    (a process that read other rows, or a folder since removed)."""
    path = os.path.join(context.out, trial.user_attrs.get("run", ""), layout.HELD_OUT_FILE)
    if not os.path.exists(path):
        return None
    probabilities = np.load(path)
    expected = (len(context.held), context.y_held.shape[1] if np.ndim(context.y_held) == 2 else None)
    return probabilities if probabilities.shape[0] == expected[0] and \
        (expected[1] is None or probabilities.shape[1] == expected[1]) else None


def _ensemble_size(finished: list, context: SearchContext) -> int:
    """The preset's number of members, fewer where loading and scoring them would not fit the time
    left (each costs about what scoring its trial's held-out and test rows did, and its loading)."""
    each = max(trial.user_attrs.get("scoring_s", 0.0) for trial in finished) + LOAD_S
    fitting = int((context.budget.left() - SAVE_MARGIN_S) / max(each, 1.0))
    return max(1, min(context.preset.ensemble_size, fitting))


# Seconds to load one member, and those kept to save the ensemble and the reports.
LOAD_S = 4.0
SAVE_MARGIN_S = 10.0


def _counts(study) -> dict[str, int]:
    counts = {}
    for trial in study.get_trials(deepcopy=False):
        name = trial.state.name.lower()
        counts[name] = counts.get(name, 0) + 1
    return counts
