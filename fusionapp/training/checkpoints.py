"""Per-epoch checkpoints, early stopping and the state `train --resume` continues from.

Early stopping lives here rather than in keras.callbacks.EarlyStopping because its counters must
survive a crash: they are saved with every epoch's checkpoint and read back on resume.
"""

from __future__ import annotations

import os
import time

import keras

from fusionapp.runs import files, layout

def load_state(run_dir: str) -> dict | None:
    """The state of the last completed epoch, or None if no epoch completed before the crash."""
    resume_dir = os.path.join(run_dir, layout.RESUME_DIR)
    path = os.path.join(resume_dir, layout.STATE_FILE)
    if not os.path.exists(path):
        return None
    state = files.read_json(path)
    named = [state.get("checkpoint"), state.get("best_weights")]
    if not all(named) or not all(os.path.exists(os.path.join(resume_dir, name)) for name in named):
        return None  # interrupted before the first epoch ended: start again from scratch
    return state


def new_state() -> dict:
    return {"epoch": 0, "best_val_loss": None, "best_epoch": None, "wait": 0, "stopped": False,
            "checkpoint": None, "best_weights": None, "history": []}


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: record history, keep the best weights, save a resumable checkpoint."""

    def __init__(self, run_dir: str, patience: int, state: dict | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.resume_dir = os.path.join(run_dir, layout.RESUME_DIR)
        self.patience = patience
        self.state = state or new_state()
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
        state["history"].append(row)
        val_loss = row.get("val_loss", row["loss"])
        # Every file is named by its epoch and written before state.json names it; state.json is
        # replaced in one rename, and files it no longer names are removed only after that. A
        # crash at any instant therefore leaves a state whose checkpoint and best weights both
        # exist and belong to the epochs it records.
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch + 1, wait=0,
                         best_weights=f"best-epoch{epoch + 1:04d}.weights.h5")
            files.save_weights(self.model, os.path.join(self.resume_dir, state["best_weights"]))
        else:
            state["wait"] += 1
        if state["wait"] >= self.patience:
            state["stopped"] = True
            self.model.stop_training = True
        state["checkpoint"] = f"epoch{epoch + 1:04d}.keras"
        state["epoch"] = epoch + 1
        state["seed_states"] = seed_states(self.model)
        files.save_model(self.model, os.path.join(self.resume_dir, state["checkpoint"]))
        files.write_json(os.path.join(self.resume_dir, layout.STATE_FILE), state)
        named = {layout.STATE_FILE, layout.TEXT_BACKBONE_WEIGHTS, layout.IMAGE_TEXT_WEIGHTS, state["checkpoint"],
                 state["best_weights"]}
        for name in os.listdir(self.resume_dir):
            if name not in named and not name.startswith("."):
                _remove(os.path.join(self.resume_dir, name))
        history = state["history"]
        header = list(dict.fromkeys(name for entry in history for name in entry))
        files.write_csv(os.path.join(self.run_dir, layout.HISTORY_FILE), header,
                            [[entry.get(name, "") for name in header] for entry in history])

    def restore_best(self, model) -> None:
        if self.state["best_weights"]:
            model.load_weights(os.path.join(self.resume_dir, self.state["best_weights"]))


def _current_learning_rate(optimizer) -> float:
    import numpy as np

    return float(np.asarray(keras.ops.convert_to_numpy(optimizer.learning_rate)))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def seed_states(model) -> list[list[int]]:
    """Where each random layer (dropout) stands in its stream: state a model file does not keep, and
    a resumed run needs to draw what the uninterrupted one would have."""
    import numpy as np

    weights = {id(variable) for variable in model.weights}
    return [np.asarray(variable).tolist() for variable in model.variables if id(variable) not in weights]


def restore_seed_states(model, states) -> None:
    import numpy as np

    weights = {id(variable) for variable in model.weights}
    for variable, state in zip([v for v in model.variables if id(v) not in weights], states or []):
        variable.assign(np.asarray(state, dtype=variable.dtype))
