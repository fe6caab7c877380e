"""Kill training at awkward moments; --resume must always finish the run, and nothing on disk may be
half-written or inconsistent. Also: locks, and identical results for identical settings."""

import glob
import json
import os
import signal

import numpy as np
import pytest

from conftest import TINY_MODEL, assert_user_error, killed_at, read_csv, run_cli, start_training, stopped_at

pytestmark = pytest.mark.integration  # every test here trains


# Each moment is the write (fusionapp/runs/files.py's FUSIONAPP_TEST_SIGNAL) before whose rename the
# training kills itself. A kill between epochs is tests/test_resume.py's (epoch0003.keras), which
# also holds the resumed run to the whole one.
MOMENTS = {
    "first_checkpoint": "epoch0001.keras",  # no state committed yet: the resume starts afresh
    "checkpoint_write": "epoch0002.keras",  # the state names epoch 1; a temporary file lies beside it
    "history_write": "history.csv",  # the state names epoch 1, which history.csv does not list yet
    "final_save": "model.keras",  # every epoch committed, the run not yet saved
}


def resume_and_check(run, capsys):
    import keras

    import fusionapp.model  # noqa: F401
    import fusionapp.preprocessing  # noqa: F401

    code, _, err = run_cli(capsys, "train", "--resume", "--out", run)
    assert code == 0, err
    assert [int(row["epoch"]) for row in read_csv(os.path.join(run, "history.csv"))] == [1, 2, 3, 4]
    keras.saving.load_model(os.path.join(run, "model.keras"), safe_mode=True)
    leftovers = [name for name in os.listdir(run) if ".tmp" in name]
    assert leftovers == [] and not os.path.exists(os.path.join(run, "resume"))


@pytest.mark.parametrize("moment", [pytest.param("first_checkpoint", marks=pytest.mark.slow),
                                    pytest.param("checkpoint_write", marks=pytest.mark.slow),
                                    pytest.param("history_write", marks=pytest.mark.slow),
                                    pytest.param("final_save", marks=pytest.mark.slow)])
def test_sigkill_then_resume_finishes_the_run(moment, demo_table, tmp_path, capsys):
    import keras

    import fusionapp.model  # noqa: F401
    import fusionapp.preprocessing  # noqa: F401

    run = str(tmp_path / "run")
    killed_at(start_training(demo_table, run, signal_at=f"KILL {MOMENTS[moment]}"))
    assert glob.glob(os.path.join(run, "**", f".{MOMENTS[moment]}.*tmp*"), recursive=True)  # killed mid-write
    model_path = os.path.join(run, "model.keras")
    if os.path.exists(model_path):  # whatever exists must be whole
        keras.saving.load_model(model_path, safe_mode=True)
    resume_and_check(run, capsys)


# The child kills itself at the instant between writing an epoch's new best weights and committing
# the state that names them: the most dangerous moment for a resume.
KILL_BEFORE_STATE_COMMIT = """
import os, signal
from fusionapp.runs import files
save_weights, write_json = files.save_weights, files.write_json
written = []
def recording_save_weights(model, path):
    save_weights(model, path)
    written.append(path)
def killing_write_json(path, values):
    # the first epoch after the first with new best weights: killed before its state names them
    if path.endswith("state.json") and values["epoch"] >= 2 and written and f"{values['epoch']:04d}" in written[-1]:
        os.kill(os.getpid(), signal.SIGKILL)
    write_json(path, values)
files.save_weights, files.write_json = recording_save_weights, killing_write_json
"""


def test_sigkill_between_the_best_weights_and_the_state_commit(demo_table, tmp_path, capsys):
    import keras

    import fusionapp.model  # noqa: F401
    import fusionapp.preprocessing  # noqa: F401

    run = str(tmp_path / "run")
    # Text alone (no batch norm) improves on the validation rows from epoch to epoch, even this tiny
    killed_at(start_training(demo_table, run, prelude=KILL_BEFORE_STATE_COMMIT, modalities="text"))
    resume_dir = os.path.join(run, "resume")
    state = json.load(open(os.path.join(resume_dir, "state.json")))
    # epoch E's best weights are on disk, but the committed state still describes epoch E - 1, whose
    # own files it names, with the best weights of an epoch it had seen
    epoch = state["epoch"]
    assert os.path.exists(os.path.join(resume_dir, f"best-epoch{epoch + 1:04d}.weights.h5"))
    assert state["best_epoch"] <= epoch
    assert (state["checkpoint"], state["best_weights"]) == (f"epoch{epoch:04d}.keras",
                                                            f"best-epoch{state['best_epoch']:04d}.weights.h5")
    if state["best_epoch"] == epoch:  # then the checkpoint's weights are the best ones
        checkpoint = keras.saving.load_model(os.path.join(resume_dir, state["checkpoint"]))
        best = keras.saving.load_model(os.path.join(resume_dir, state["checkpoint"]))
        best.load_weights(os.path.join(resume_dir, state["best_weights"]))
        for saved, restored in zip(checkpoint.get_weights(), best.get_weights()):
            np.testing.assert_array_equal(saved, restored)
    resume_and_check(run, capsys)


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
def test_second_training_into_the_same_folder_refuses_while_different_folders_work(demo_table, tmp_path, capsys):
    from fusionapp import train

    first = tmp_path / "shared"
    # Stopped (SIGSTOP) as it writes its first history.csv: it holds the lock, and its config.json is written.
    process = start_training(demo_table, first, signal_at="STOP history.csv")
    try:
        stopped_at(process)
        assert (first / ".lock").exists() and (first / "config.json").exists()
        code, _, err = run_cli(capsys, "train", demo_table, "--out", first, "--overwrite")
        assert_user_error(code, err, "another fusionapp process is training into this folder")
        other = train(demo_table, str(tmp_path / "other"), epochs=1, verbose=0, **TINY_MODEL)
        assert os.path.exists(os.path.join(other, "model.keras"))
    finally:
        process.send_signal(signal.SIGCONT)
        _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err.decode()[-2000:]
    assert os.path.exists(first / "model.keras")


@pytest.mark.slow  # the default suite's tests/test_resume.py holds two runs of the same settings to each other
def test_same_data_seed_and_settings_give_identical_metrics(demo_table, tmp_path):
    from fusionapp import train

    outputs = []
    for name in ("a", "b"):
        run = train(demo_table, str(tmp_path / name), epochs=2, seed=7, verbose=0,
                    tabular_col=("price", "seller"), **TINY_MODEL)
        outputs.append(open(os.path.join(run, "metrics.json")).read())
    assert outputs[0] == outputs[1]
