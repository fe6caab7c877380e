"""An interrupted training run continues from its last completed epoch with --resume."""

import json
import os
import signal
import time

from conftest import read_csv, run_cli, start_training


def wait_for_epoch(run_dir, epoch, process, timeout=180):
    state_path = os.path.join(run_dir, "resume", "state.json")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "training ended before it could be interrupted"
        if os.path.exists(state_path):
            with open(state_path) as handle:
                if json.load(handle)["epoch"] >= epoch:
                    return
        time.sleep(0.2)
    raise TimeoutError("no checkpoint appeared")


def test_killed_run_resumes_to_the_same_number_of_epochs(demo_table, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    process = start_training(demo_table, run_dir)
    try:
        wait_for_epoch(run_dir, 1, process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not os.path.exists(os.path.join(run_dir, "model.keras"))
    code, _, err = run_cli(capsys, "evaluate", run_dir, demo_table)
    assert code == 1 and "--resume" in err
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run_dir)
    assert code == 0, err
    assert "Resuming after epoch" in out
    assert [int(row["epoch"]) for row in read_csv(os.path.join(run_dir, "history.csv"))] == [1, 2, 3, 4]
    import keras

    import fusionapp.model  # noqa: F401
    import fusionapp.preprocessing  # noqa: F401
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True)
    assert model.count_params() > 0
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run_dir)
    assert code == 1 and "already finished" in err
