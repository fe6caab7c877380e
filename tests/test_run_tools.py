"""`info`, `train --config` and `--tensorboard`."""

import json
import os

import pytest

from conftest import run_cli


def test_info_readable_and_json(trained_run, capsys):
    code, out, _ = run_cli(capsys, "info", trained_run)
    assert code == 0
    assert "angular_new" in out and "price (numeric)" in out and "TensorFlow" in out
    code, out, _ = run_cli(capsys, "info", trained_run, "--json")
    details = json.loads(out)
    assert details["class_names"] == ["angular_new", "angular_used", "round_new", "round_used"]
    assert details["modalities"] == ["image", "text", "tabular"]
    assert details["validation_metrics"]["n_examples"] > 0
    assert details["versions"]["fusionapp"]
    assert details["distribution"] == {"strategy": "default", "replicas": 1, "workers": 1, "global_batch_size": 64}


def test_info_on_something_that_is_not_a_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "info", tmp_path)
    assert code == 1 and "not a fusionapp run" in err


@pytest.mark.integration
def test_config_file_settings_and_flags_win(demo_table, tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(f'data = "{demo_table}"\nepochs = 3\nmodalities = "text"\ntext-encoder = "mean"\n'
                      'batch_size = 16\nseed = 5\n')
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--config", config, "--epochs", 1, "--out", out, "--tensorboard")
    assert code == 0, err
    settings = json.load(open(out / "config.json"))["settings"]
    assert settings["training"]["epochs"] == 1  # the flag wins
    assert settings["training"]["batch_size"] == 16 and settings["training"]["seed"] == 5
    assert settings["model"]["modalities"] == ["text"] and settings["model"]["text_encoder"] == "mean"
    logs = [name for _, _, files in os.walk(out / "tensorboard") for name in files]
    assert any(name.startswith("events.out.tfevents") for name in logs)


def test_config_file_mistakes(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 2, "learning_rat": 0.1}')
    code, _, err = run_cli(capsys, "train", "--config", bad, "--out", tmp_path / "r")
    assert code == 1 and "unknown setting 'learning_rat'" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 2")
    code, _, err = run_cli(capsys, "train", "--config", broken, "--out", tmp_path / "r")
    assert code == 1 and "not valid TOML or JSON" in err
