"""Running a search's trials: each one a run of its own in RUN/trials/NNNN, trained on the rows the
search read once, pruned after any validation pass that successive halving finds behind, stopped in
the middle of an epoch at its deadline, and scored on the rows the search held out. One line each."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import keras
import numpy as np

from fusionapp.errors import FusionError, one_line
from fusionapp.evaluation.calibration import mean_log_loss
from fusionapp.inference.raw_inference import predict_examples
from fusionapp.runs import files, layout
from fusionapp.search.budget import Budget
from fusionapp.search.space import Preset, optuna_suggest, trial_settings
from fusionapp.settings import RunSettings
from fusionapp.settings.search import SearchSettings
from fusionapp.training.hooks import TrialHooks
from fusionapp.training.train import train_trial

# Before any trial has finished, what follows a trial's network (the wide path, scoring, saving) is
# taken to need this share of the time limit, and at least the floor.
FIRST_AFTER_NETWORK = (0.08, 10.0)


@dataclass
class SearchContext:
    """What every trial of one search shares."""

    data: str
    out: str
    base: RunSettings  # the user's settings, unresolved (each trial resolves its own)
    asked: tuple[str, ...]  # the settings the user gave, kept in every trial
    search: SearchSettings
    preset: Preset
    rows: object  # TrainingRows without the held-out rows
    held: object  # Examples: the validation rows no trial sees
    y_held: np.ndarray
    modalities: tuple[str, ...]
    placement: object
    budget: Budget
    say: object


class OutOfTime(Exception):
    """A trial reached its deadline in the middle of an epoch."""


class TrialFailed(FusionError):
    """A trial that could not finish (a diverged loss, a setting the data refuses, memory): the
    search notes why and goes on."""


class TrialCallback(keras.callbacks.Callback):
    """Reports each validation pass's loss to the trial and prunes it when successive halving says
    so; stops it at `deadline` (time.time()) after any batch, of training or of validation."""

    def __init__(self, trial, deadline: float):
        super().__init__()
        self.trial, self.deadline, self.passes = trial, deadline, 0

    def _check_time(self):
        if time.time() > self.deadline:
            raise OutOfTime()

    def on_train_batch_end(self, batch, logs=None):
        self._check_time()

    def on_test_batch_end(self, batch, logs=None):
        self._check_time()

    def on_epoch_end(self, epoch, logs=None):
        import optuna

        self.passes += 1
        loss = (logs or {}).get("val_loss")
        if loss is None:
            return
        if not np.isfinite(loss):  # a diverged trial: nothing to gain from more epochs
            raise TrialFailed(f"its validation loss is {loss} after pass {self.passes}")
        self.trial.report(float(loss), step=self.passes)
        # After the fit's last epoch there is nothing left to save: the trial is kept for the ensemble.
        epochs = (self.params or {}).get("epochs")
        last = epochs is not None and epoch + 1 >= epochs
        if not last and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after validation pass {self.passes}")


def process_name() -> str:
    """This process, among the machines joined to a study."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def after_network_s(study, budget: Budget) -> float:
    """The most seconds a finished trial spent after its network, or the first guess."""
    seconds = [trial.user_attrs.get("after_network_s", 0.0) for trial in finished_trials(study)]
    first = max(budget.limit_s * FIRST_AFTER_NETWORK[0], FIRST_AFTER_NETWORK[1])
    return max(seconds) * 1.2 if seconds else first


def run_trials(study, context: SearchContext) -> None:
    """Trials until the budget leaves no room for another."""
    def stop_when_out_of_time(study, trial):
        if not context.budget.room_for_trial(after_network_s(study, context.budget)):
            study.stop()

    if not context.budget.room_for_trial(after_network_s(study, context.budget)):
        return
    study.optimize(lambda trial: _objective(trial, context), callbacks=[stop_when_out_of_time], gc_after_trial=True,
                   catch=(TrialFailed,))


def _objective(trial, context: SearchContext) -> float:
    import optuna

    settings, proposed = trial_settings(context.base, context.preset, context.search, context.asked,
                                        context.modalities, optuna_suggest(trial))
    out = os.path.join(context.out, layout.TRIALS_DIR, f"{trial.number:04d}")
    shutil.rmtree(out, ignore_errors=True)  # a trial queued again after its process died
    budget = context.budget
    deadline = budget.trials_end - after_network_s(trial.study, budget)
    hooks = TrialHooks(context.rows, context.modalities, (TrialCallback(trial, deadline),))
    started = time.time()
    trial.set_user_attr("run", os.path.relpath(out, context.out))
    trial.set_user_attr("process", process_name())
    try:
        train_trial(context.data, out, settings, context.placement, hooks, verbose=0)
    except (OutOfTime, optuna.TrialPruned) as error:
        _give_up(context, trial, proposed, out, started, "out of time" if isinstance(error, OutOfTime)
                 else str(error) or "pruned")
        raise optuna.TrialPruned(trial.user_attrs["note"]) from None
    except Exception as error:  # noqa: BLE001 - one trial's failure (diverged, out of memory) ends only it
        _give_up(context, trial, proposed, out, started, f"failed: {one_line(error)}")
        raise TrialFailed(trial.user_attrs["note"]) from error
    network_done = time.time()
    predictions = predict_examples(hooks.model, context.held)
    if not np.isfinite(predictions.probabilities).all():
        _give_up(context, trial, proposed, out, started, "failed: probabilities that are not numbers")
        raise TrialFailed(trial.user_attrs["note"])
    with files.atomic_path(os.path.join(out, layout.HELD_OUT_FILE), suffix=".npy") as temporary:
        np.save(temporary, predictions.probabilities)
    loss = mean_log_loss(context.y_held, predictions.probabilities)
    config = files.read_json(os.path.join(out, layout.CONFIG_FILE))
    stages = config.get("stage_seconds", {})
    held_s = time.time() - network_done
    attrs = {"seconds": round(time.time() - started, 1), "held_out_score": _score(context, predictions),
             "after_network_s": round(sum(stages.get(name, 0.0) for name in ("post_hoc", "test", "save")) + held_s, 1),
             "scoring_s": round(stages.get("test", 0.0) + held_s, 1),
             "epochs_run": config.get("epochs_run"), **_report_scores(out)}
    for name, value in attrs.items():
        trial.set_user_attr(name, value)
    _say_trial(context, trial, proposed, loss, None)
    hooks.model = None
    keras.backend.clear_session()  # what Keras keeps of the trial's graphs, so a long search holds its memory
    return loss


def _give_up(context: SearchContext, trial, proposed: dict, out: str, started: float, note: str) -> None:
    """A trial that will not finish: its folder removed, why noted (the leaderboard's `note`), its line."""
    shutil.rmtree(out, ignore_errors=True)
    trial.set_user_attr("note", note)
    trial.set_user_attr("seconds", round(time.time() - started, 1))
    _say_trial(context, trial, proposed, None, note)


def _score(context: SearchContext, predictions) -> float:
    """The held-out rows' macro-F1 (multi-label: micro-F1 over the label decisions)."""
    from sklearn.metrics import f1_score

    if np.ndim(context.y_held) == 2:
        return round(float(f1_score(context.y_held > 0.5, predictions.predicted, average="micro", zero_division=0)), 4)
    present = sorted(set(context.y_held.tolist()))
    return round(float(f1_score(context.y_held, predictions.predicted, labels=present, average="macro",
                                zero_division=0)), 4)


# The figures of a trial's own reports the leaderboard shows.
REPORT_SCORES = ("accuracy", "macro_f1", "micro_f1")


def _report_scores(out: str) -> dict:
    scores = {}
    for prefix, name in (("val", layout.METRICS_FILE), ("test", layout.TEST_METRICS_FILE)):
        path = os.path.join(out, name)
        if os.path.exists(path):
            report = files.read_json(path)
            scores.update({f"{prefix}_{key}": report[key] for key in REPORT_SCORES if key in report})
    return scores


def finished_trials(study) -> list:
    from optuna.trial import TrialState

    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def _say_trial(context: SearchContext, trial, proposed: dict, loss: float | None, note: str | None) -> None:
    values = ", ".join(f"{name}={_short(value)}" for name, value in proposed.items()) or "the settings as given"
    finished = finished_trials(trial.study)
    best = min(finished, key=lambda done: done.value) if finished else None
    result = note if loss is None else f"held-out log loss {loss:.4f}, score {trial.user_attrs['held_out_score']:.4f}"
    best_words = f"best: trial {best.number} ({best.value:.4f})" if best else "no trial finished yet"
    if loss is not None and (best is None or loss < best.value):
        best_words = "best so far"
    context.say(f"Trial {trial.number} [{values}]: {result}; {best_words}; {max(context.budget.left(), 0):.0f} s left")


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return f"{value!r}" if value == "" else str(value)
