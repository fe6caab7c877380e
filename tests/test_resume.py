"""An interrupted run continues with --resume exactly as it would have gone on, with the settings and
data it recorded: more epochs are fine, anything else different is refused."""

import os

import numpy as np
import pytest

from conftest import TINY_MODEL, assert_user_error, killed_at, read_csv, run_cli, start_training, write_csv
from fusionapp.settings import RunSettings, apply_flat
from fusionapp.settings.resume import resumed_settings


@pytest.mark.slow
def test_a_killed_run_resumes_as_the_uninterrupted_run_would_have_gone_on(demo_rows, tmp_path, capsys):
    from fusionapp import train

    table = write_csv(tmp_path / "demo.csv", demo_rows)
    reference = train(table, str(tmp_path / "reference"), epochs=4, patience=10, verbose=0, **TINY_MODEL)
    run_dir = str(tmp_path / "run")
    # The same settings, in a process of its own, killed as its third epoch's checkpoint is written:
    # the last state it committed is the second epoch's.
    killed_at(start_training(table, run_dir, signal_at="KILL epoch0003.keras"))
    assert not os.path.exists(os.path.join(run_dir, "model.keras"))
    code, _, err = run_cli(capsys, "evaluate", run_dir, table)
    assert code == 1 and "--resume" in err
    refuses_other_settings_and_data(run_dir, table, demo_rows, tmp_path, capsys)
    code, out, err = run_cli(capsys, "train", "--resume", "--out", run_dir, "--epochs", "4")
    assert code == 0, err
    assert "Resuming after epoch 2" in out
    resumed, uninterrupted = (read_csv(os.path.join(path, "history.csv")) for path in (run_dir, reference))
    assert [int(row["epoch"]) for row in resumed] == [1, 2, 3, 4]
    for key in ("loss", "val_loss", "learning_rate"):
        np.testing.assert_allclose([float(row[key]) for row in resumed], [float(row[key]) for row in uninterrupted],
                                   rtol=1e-4, err_msg=key)
    import fusionapp

    weights = [fusionapp.load_model(path).get_weights() for path in (run_dir, reference)]
    for mine, theirs in zip(*weights):
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-4)
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run_dir)
    assert code == 1 and "already finished" in err


def refuses_other_settings_and_data(run_dir, table, demo_rows, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run_dir, "--learning-rate", "0.5", "--epochs", "30")
    assert_user_error(code, err, "--learning-rate 0.5 (recorded: 0.002)", "Only --epochs")
    other = write_csv(tmp_path / "other.csv", demo_rows[:100])
    code, _, err = run_cli(capsys, "train", other, "--resume", "--out", run_dir)
    assert_user_error(code, err, "the data it started with", "other.csv")
    stat = os.stat(table)
    os.utime(table, ns=(0, 0))  # the same path and size, but not the file it was
    code, _, err = run_cli(capsys, "train", "--resume", "--out", run_dir)
    assert_user_error(code, err, "changed since the run started")
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_resume_rule_takes_how_long_to_go_on_and_refuses_the_rest():
    recorded = apply_flat(RunSettings(), {"epochs": 4, "tabular_col": ("price",), "image_backbone": "resnet50_v2",
                                          "fine_tune": 3}).resolved(("image", "text"))
    resumed = resumed_settings(recorded, {"epochs": 30, "patience": 9, "tensorboard": True, "fine_tune_epochs": 2,
                                          "learning_rate": 0.002, "image_size": 0, "tabular_col": ["price"]})
    assert (resumed.training.epochs, resumed.training.patience, resumed.training.tensorboard) == (30, 9, True)
    assert resumed.model == recorded.model and resumed.training.learning_rate == 0.002
    for name, value in (("learning_rate", 0.5), ("text_encoder", "cnn"), ("image_size", 96), ("seed", 3),
                        ("tabular_col", ["price", "brand"])):
        with pytest.raises(Exception, match=f"--{name.replace('_', '-')} "):
            resumed_settings(recorded, {"epochs": 30, name: value})
