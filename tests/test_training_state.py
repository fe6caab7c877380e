"""The training state behind --resume: a frozen TrainingState, saved as resume/state.json under the
keys earlier versions wrote, so a run interrupted by one of them resumes."""

import dataclasses
import json

import pytest

from fusionapp.errors import FusionError
from fusionapp.training.checkpoints import TrainingState

# The state.json of a run of fusionapp 0.11 interrupted while fine-tuning its image backbone.
SAVED = {"epoch": 2, "best_val_loss": 1.38, "best_epoch": 2, "wait": 0, "stopped": False,
         "checkpoint": "epoch0002.keras", "best_weights": "best-epoch0002.weights.h5",
         "history": [{"epoch": 1, "loss": 1.5, "val_loss": 1.4, "learning_rate": 0.002, "seconds": 3.2},
                     {"epoch": 2, "loss": 1.4, "val_loss": 1.38, "learning_rate": 0.0001, "seconds": 4.1}],
         "seed_states": [[0, 7], [0, 9]], "backbone_weights_sha256": "cb92", "phase": "fine_tune",
         "fine_tune_start": 1}


def test_state_json_of_an_earlier_run_reads_back_and_is_written_under_the_same_keys():
    state = TrainingState.from_json({**SAVED, "a_later_key": 1})
    assert state.fine_tuning and state.fine_tune_start == 1 and state.history[1]["val_loss"] == 1.38
    assert json.loads(json.dumps(state.to_json())) == SAVED
    # A new run's state names only what it knows: no phase, digests or seed states yet.
    assert set(TrainingState().to_json()) == {"epoch", "best_val_loss", "best_epoch", "wait", "stopped",
                                              "checkpoint", "best_weights", "history"}


def test_a_state_is_changed_by_replacing_it():
    state = TrainingState()
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.epoch = 1
    later = state.with_backbone("text_backbone_weights_sha256", "ab12")
    assert state.text_backbone_weights_sha256 is None and later.text_backbone_weights_sha256 == "ab12"
    with pytest.raises(FusionError, match="differ from those this run started with"):
        later.with_backbone("text_backbone_weights_sha256", "cd34")
