"""Kill training at awkward moments; --resume must always finish the run, and nothing on disk may be
half-written. Also: locks, and identical results for identical settings."""

import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_MODEL, run_cli
from test_errors import assert_user_error

TRAIN = """
import sys
from fusionapp import train
train(sys.argv[1], sys.argv[2], epochs=4, patience=10, verbose=0, **{tiny})
"""


def start_training(table, run_dir):
    return subprocess.Popen([sys.executable, "-c", TRAIN.format(tiny=repr(TINY_MODEL)), table, str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def epochs_done(run_dir):
    try:
        with open(os.path.join(run_dir, "resume", "state.json")) as handle:
            return json.load(handle)["epoch"]
    except (OSError, ValueError):
        return 0


def kill_when(process, condition, timeout=240):
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if condition():
                return
            assert process.poll() is None, "training finished before the moment to kill it came"
            time.sleep(0.002)
        raise TimeoutError("the moment to kill never came")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


MOMENTS = {
    "mid_epoch": lambda run: epochs_done(run) >= 2,
    "checkpoint_write": lambda run: bool(glob.glob(os.path.join(run, "resume", ".epoch*.tmp*"))),
    "final_save": lambda run: bool(glob.glob(os.path.join(run, ".model.keras.*tmp*"))),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigkill_then_resume_finishes_the_run(moment, demo_table, tmp_path, capsys):
    import keras

    import fusionapp.model  # noqa: F401

    run = str(tmp_path / "run")
    kill_when(start_training(demo_table, run), lambda: MOMENTS[moment](run))
    model_path = os.path.join(run, "model.keras")
    if os.path.exists(model_path):  # whatever exists must be whole
        keras.saving.load_model(model_path, safe_mode=True)
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run)
    assert code == 0, err
    with open(os.path.join(run, "history.csv"), newline="") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [1, 2, 3, 4]
    keras.saving.load_model(model_path, safe_mode=True)
    leftovers = [name for name in os.listdir(run) if ".tmp" in name]
    assert leftovers == [] and not os.path.exists(os.path.join(run, "resume"))


def test_second_training_into_the_same_folder_refuses_while_different_folders_work(demo_table, tmp_path, capsys):
    from fusionapp import train

    first = tmp_path / "shared"
    process = start_training(demo_table, first)
    try:
        deadline = time.time() + 120
        while not (first / ".lock").exists() or not (first / "config.json").exists():
            assert time.time() < deadline and process.poll() is None
            time.sleep(0.05)
        code, _, err = run_cli(capsys, "train", demo_table, "--out", first, "--overwrite")
        assert_user_error(code, err, "another fusionapp process is training into this folder")
        other = train(demo_table, str(tmp_path / "other"), epochs=1, verbose=0, **TINY_MODEL)
        assert os.path.exists(os.path.join(other, "model.keras"))
    finally:
        assert process.wait(timeout=240) == 0
    assert os.path.exists(first / "model.keras")


def test_same_data_seed_and_settings_give_identical_metrics(demo_table, tmp_path):
    from fusionapp import train

    outputs = []
    for name in ("a", "b"):
        run = train(demo_table, str(tmp_path / name), epochs=2, seed=7, verbose=0,
                    tabular_col=("price", "seller"), **TINY_MODEL)
        outputs.append(open(os.path.join(run, "metrics.json")).read())
    assert outputs[0] == outputs[1]
