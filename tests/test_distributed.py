"""`--strategy`: MirroredStrategy over two logical CPU devices, and a two-process
MultiWorkerMirroredStrategy cluster on 127.0.0.1. Each runs in fresh processes, because a strategy's
devices and collectives must be configured before TensorFlow runs its first op."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import TINY_MODEL, read_csv, run_cli

TIMEOUT_S = 420


def _settings(**extra) -> dict:
    return {"epochs": 1, "batch_size": 16, "tabular_col": ["price", "seller"], "verbose": 0, **TINY_MODEL, **extra}


def _run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S,
                          env={**os.environ, **(env or {})})


def _assert_loadable_run(run_dir: str, table: str) -> None:
    """The run reloads, predicts every row, and its metrics agree with `evaluate`."""
    from fusionapp import evaluate, predict

    rows = predict(run_dir, table, verbose=0)
    assert len(rows) == 160 and all(row["predicted_label"] for row in rows)
    report = evaluate(run_dir, table, verbose=0)
    labels = [row["label"] for row in read_csv(table)]
    assert report["n_examples"] == 160
    assert report["accuracy"] == pytest.approx(sum(row["predicted_label"] == label
                                                   for row, label in zip(rows, labels)) / 160)


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.integration
def test_mirrored_over_two_logical_cpus(demo_table, tmp_path):
    out = tmp_path / "mirrored"
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fusionapp import train
train({demo_table!r}, {str(out)!r}, strategy="mirrored", **{_settings()!r})
"""
    result = _run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["status"] == "complete"
    assert (config["strategy"], config["replicas"], config["workers"]) == ("mirrored", 2, 1)
    assert config["global_batch_size"] == 32  # 16 per replica x 2 replicas
    from fusionapp.runs.info import run_info

    assert run_info(str(out))["distribution"] == {"strategy": "mirrored", "replicas": 2, "workers": 1,
                                                  "global_batch_size": 32}
    _assert_loadable_run(str(out), demo_table)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# Two training processes (15 s); the mirrored strategy is the default suite's.
@pytest.mark.slow
def test_two_worker_cluster_on_localhost_trains_a_loadable_run(demo_table, tmp_path):
    out = tmp_path / "cluster-run"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    flags = ["--epochs", "1", "--batch-size", "16", "--tabular-col", "price", "--tabular-col", "seller",
             "--image-size", "32", "--image-filters", "16,32", "--strategy", "multi-worker"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TMPDIR": str(scratch)}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "fusionapp", "train", demo_table, "--out", str(out), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for process in processes:
            process.kill()
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
    assert "2 replicas in sync on 2 worker(s), global batch 32" in outputs[0]
    config = json.loads((out / "config.json").read_text())
    assert (config["status"], config["strategy"], config["workers"], config["replicas"]) == \
        ("complete", "multi-worker", 2, 2)
    # Only the chief wrote a run; the other worker's scratch run is gone.
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("cluster-run", "tmp")] == []
    assert not any(name.startswith("fusionapp-worker") for name in os.listdir(scratch))
    _assert_loadable_run(str(out), demo_table)


@pytest.mark.parametrize("tf_config, message", [
    (None, "--strategy multi-worker needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not a valid cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "task index 3 is outside the 1 'worker' addresses"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "ps", "index": 0}}',
     "this task is a 'ps'"),
])
def test_bad_cluster_settings_are_one_line_errors(capsys, monkeypatch, demo_table, tmp_path, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    code, _, err = run_cli(capsys, "train", demo_table, "--out", tmp_path / "run", "--strategy", "multi-worker")
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
