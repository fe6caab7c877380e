"""A train that fails on its data, a pretrained model's weights or an unanswering dispatcher leaves
--out as it found it, so the corrected command runs there; --overwrite keeps the run it would replace
until the new one can stand."""

import os
import socket
import time

import pytest

from conftest import assert_user_error, run_cli
from text_presets import tiny_bert_preset

pytestmark = pytest.mark.integration

TINY_FLAGS = ["--epochs", "1", "--image-size", "32", "--image-filters", "8,16", "--branch-units", "16",
              "--fusion-units", "16"]


def _corrupt_table(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file")
    return str(path)


@pytest.mark.parametrize("existing", [pytest.param(False, marks=pytest.mark.slow), True])
def test_a_train_that_fails_on_its_data_leaves_out_as_it_found_it(existing, demo_table, tmp_path, capsys):
    out = tmp_path / "run"
    if existing:
        out.mkdir()
    code, _, err = run_cli(capsys, "train", _corrupt_table(tmp_path), "--out", out, *TINY_FLAGS)
    assert code == 1 and "Traceback" not in err
    assert (out.exists() and sorted(os.listdir(out)) == []) if existing else not out.exists()
    code, _, err = run_cli(capsys, "train", demo_table, "--out", out, *TINY_FLAGS)
    assert code == 0, err
    assert (out / "model.keras").exists()


def test_a_train_that_fails_on_a_text_models_weights_leaves_out_empty(demo_table, tmp_path, capsys):
    preset = tiny_bert_preset(str(tmp_path / "bert"))
    weights = [name for name in os.listdir(preset) if name.endswith((".h5", ".safetensors"))]
    assert weights, os.listdir(preset)
    for name in weights:
        (tmp_path / "bert" / name).write_bytes(b"not weights at all")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", demo_table, "--out", out, "--text-backbone", preset,
                           "--sequence-length", "16", *TINY_FLAGS)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_an_overwrite_that_fails_keeps_the_run_it_would_replace(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = {name: (run / name).read_bytes() for name in ("model.keras", "config.json")}
    code, _, err = run_cli(capsys, "train", _corrupt_table(tmp_path), "--out", run, "--overwrite", *TINY_FLAGS)
    assert code == 1, err
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not (run / ".replaced").exists()


def test_a_dispatcher_that_does_not_answer_ends_train_within_the_wait(demo_table, tmp_path, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "run"
    started = time.monotonic()
    code, printed, err = run_cli(capsys, "train", demo_table, "--out", out, "--data-service", f"127.0.0.1:{port}",
                                 "--data-service-timeout", "2", *TINY_FLAGS)
    assert time.monotonic() - started < 30
    assert_user_error(code, err, f"--data-service grpc://127.0.0.1:{port}", "no dispatcher answered within 2 s")
    assert f"Waiting up to 2 s for the tf.data service dispatcher at grpc://127.0.0.1:{port}" in printed
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_an_output_that_cannot_be_written_is_one_line(command, trained_run, demo_table, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    target = blocker / "out.csv"  # a folder that cannot be made: a file holds its name
    code, _, err = run_cli(capsys, command, trained_run, demo_table, "--split", "test", "--out", target)
    assert_user_error(code, err, str(target), "cannot write there")
