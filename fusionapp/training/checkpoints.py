"""Per-epoch checkpoints, early stopping and the state `train --resume` continues from.

Early stopping lives here rather than in keras.callbacks.EarlyStopping because its counters must
survive a crash: they are saved with every epoch's checkpoint and read back on resume.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import keras
import numpy as np

from fusionapp.errors import FusionError
from fusionapp.runs import files, layout


@dataclass(frozen=True)
class TrainingState:
    """Where training stands after its last completed epoch: resume/state.json, under the same keys
    (JSON null for what is unset). Frozen: a change is a new state (`dataclasses.replace`), taken up
    by the RunCheckpoint that owns the run's state and saves it."""

    epoch: int = 0  # epochs completed, both phases counted
    best_val_loss: float | None = None  # the best epoch's validation loss (this phase's start, fine-tuning)
    best_epoch: int | None = None
    wait: int = 0  # epochs since the best one (early stopping's counter)
    stopped: bool = False  # early stopping ended the current phase
    checkpoint: str | None = None  # the last epoch's model file in resume/
    best_weights: str | None = None  # the best epoch's weights file in resume/
    history: tuple[dict, ...] = ()  # one row per epoch: epoch, the Keras logs, learning_rate, seconds
    seed_states: tuple | None = None  # where each random layer stands in its stream (seed_states)
    phase: str | None = None  # "fine_tune" once the second phase has started
    fine_tune_start: int | None = None  # the epoch the fine-tuning started after
    # digests of the pretrained weights the run started with (a resumed run must keep them)
    backbone_weights_sha256: str | None = None
    text_backbone_weights_sha256: str | None = None

    @property
    def fine_tuning(self) -> bool:
        return self.phase == "fine_tune"

    @classmethod
    def from_json(cls, values: dict) -> "TrainingState":
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        return cls(**{**values, "history": tuple(values.get("history") or ()),
                      "seed_states": _tuples(values.get("seed_states"))})

    def to_json(self) -> dict:
        """Keys set only once known (phase, digests, ...) are left out until they are, as before."""
        always = ("epoch", "best_val_loss", "best_epoch", "wait", "stopped", "checkpoint", "best_weights", "history")
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
                if key in always or value is not None}

    def with_backbone(self, key: str, digest: str) -> "TrainingState":
        """The state with the digest of a pretrained model's weights (`key`: one of the *_sha256
        fields) recorded; a FusionError if the run started with other weights."""
        started = getattr(self, key)
        if started is not None and started != digest:
            raise FusionError("the backbone's weights differ from those this run started with (the weights file "
                              "changed since); resume with the original file, or train again")
        return dataclasses.replace(self, **{key: digest})


def _tuples(value):
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def load_state(run_dir: str) -> TrainingState | None:
    """The state of the last completed epoch, or None if no epoch completed before the crash."""
    resume_dir = os.path.join(run_dir, layout.RESUME_DIR)
    path = os.path.join(resume_dir, layout.STATE_FILE)
    if not os.path.exists(path):
        return None
    state = TrainingState.from_json(files.read_json(path))
    named = [state.checkpoint, state.best_weights]
    if not all(named) or not all(os.path.exists(os.path.join(resume_dir, name)) for name in named):
        return None  # interrupted before the first epoch ended: start again from scratch
    return state


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: record history, keep the best weights, save a resumable checkpoint. The
    one owner of the run's TrainingState: every change to it is made and saved here."""

    def __init__(self, run_dir: str, patience: int, state: TrainingState | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.resume_dir = os.path.join(run_dir, layout.RESUME_DIR)
        self.patience = patience
        self.state = state or TrainingState()
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        row.update({name: float(value) for name, value in logs.items() if name != "learning_rate"})
        row["learning_rate"] = _current_learning_rate(self.model.optimizer)
        row["seconds"] = round(time.perf_counter() - self._started, 3)
        state = self.state
        val_loss = row.get("val_loss", row["loss"])
        # Every file is named by its epoch and written before state.json names it; state.json is
        # replaced in one rename, and files it no longer names are removed only after that. A
        # crash at any instant therefore leaves a state whose checkpoint and best weights both
        # exist and belong to the epochs it records.
        if state.best_val_loss is None or val_loss < state.best_val_loss:
            state = dataclasses.replace(state, best_val_loss=val_loss, best_epoch=epoch + 1, wait=0,
                                        best_weights=f"best-epoch{epoch + 1:04d}.weights.h5")
            files.save_weights(self.model, os.path.join(self.resume_dir, state.best_weights))
        else:
            state = dataclasses.replace(state, wait=state.wait + 1)
        if state.wait >= self.patience:
            state = dataclasses.replace(state, stopped=True)
            self.model.stop_training = True
        state = dataclasses.replace(state, checkpoint=f"epoch{epoch + 1:04d}.keras", epoch=epoch + 1,
                                    history=state.history + (row,), seed_states=seed_states(self.model))
        files.save_model(self.model, os.path.join(self.resume_dir, state.checkpoint))
        self._save(state)
        history = state.history
        header = list(dict.fromkeys(name for entry in history for name in entry))
        files.write_csv(os.path.join(self.run_dir, layout.HISTORY_FILE), header,
                        [[entry.get(name, "") for name in header] for entry in history])

    def start_fine_tune(self, model, start_loss: float) -> None:
        """The second phase starts from `model` (the first phase's best weights) and its validation
        loss: a crash from here on resumes the fine-tuning, and if it never beats that loss, those
        weights are what the run keeps."""
        epoch = self.state.epoch
        state = dataclasses.replace(self.state, phase="fine_tune", fine_tune_start=epoch, wait=0, stopped=False,
                                    best_val_loss=start_loss, seed_states=seed_states(model),
                                    best_weights=f"fine-tune-start{epoch:04d}.weights.h5",
                                    checkpoint=f"fine-tune-start{epoch:04d}.keras")
        os.makedirs(self.resume_dir, exist_ok=True)
        files.save_weights(model, os.path.join(self.resume_dir, state.best_weights))
        files.save_model(model, os.path.join(self.resume_dir, state.checkpoint))
        self._save(state)

    def _save(self, state: TrainingState) -> None:
        """state.json replaced by `state`, then the files it no longer names removed."""
        files.write_json(os.path.join(self.resume_dir, layout.STATE_FILE), state.to_json())
        self.state = state
        named = {layout.STATE_FILE, layout.TEXT_BACKBONE_WEIGHTS, layout.IMAGE_TEXT_WEIGHTS, state.checkpoint,
                 state.best_weights}
        for name in os.listdir(self.resume_dir):
            if name not in named and not name.startswith("."):
                _remove(os.path.join(self.resume_dir, name))

    def restore_best(self, model) -> None:
        if self.state.best_weights:
            model.load_weights(os.path.join(self.resume_dir, self.state.best_weights))


def _current_learning_rate(optimizer) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def seed_states(model) -> list[list[int]]:
    """Where each random layer (dropout) stands in its stream: state a model file does not keep, and
    a resumed run needs to draw what the uninterrupted one would have."""
    weights = {id(variable) for variable in model.weights}
    return [np.asarray(variable).tolist() for variable in model.variables if id(variable) not in weights]


def restore_seed_states(model, states) -> None:
    weights = {id(variable) for variable in model.weights}
    for variable, state in zip([v for v in model.variables if id(v) not in weights], states or []):
        variable.assign(np.asarray(state, dtype=variable.dtype))
