"""Shared fixtures and helpers: tiny synthetic data, tiny runs, a running server, CSV files, the CLI
in-process. Nothing here downloads anything."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import tempfile
import threading
import uuid
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The suite never downloads weights, and never reads or fills the user's Keras or feature caches.
os.environ["FUSIONAPP_OFFLINE"] = "1"
os.environ["KERAS_HOME"] = tempfile.mkdtemp(prefix="fusionapp-test-keras-")
os.environ["FUSIONAPP_CACHE_DIR"] = tempfile.mkdtemp(prefix="fusionapp-test-features-")
os.environ["KAGGLEHUB_CACHE"] = tempfile.mkdtemp(prefix="fusionapp-test-kagglehub-")
os.environ["FUSIONAPP_CHECK_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="fusionapp-test-checks-"), "checks.sqlite")

import numpy as np
import pytest

# Small enough for a 2-core CI machine: 32 px images and narrow blocks. (A setting is given only
# where it applies: TINY_TEXT sizes the cnn and mean text encoders.)
TINY_MODEL = {"image_size": 32, "image_filters": (16, 32), "image_stem_filters": 16, "branch_units": 32,
              "fusion_units": 32}
TINY_TEXT = {"text_filters": 16, "text_embedding_dim": 16}
# With a pretrained backbone: no stem, and with the pooling head no multi-kernel block to size.
TINY_BACKBONE = {key: value for key, value in TINY_MODEL.items() if key not in ("image_filters", "image_stem_filters")}
DEMO_CLASSES = ["angular_new", "angular_used", "round_new", "round_used"]
# The keys of the evaluate report, in order, as the documentation lists them.
REPORT_KEYS = ("n_examples", "n_skipped", "accuracy", "balanced_accuracy", "macro_precision",
               "macro_recall", "macro_f1", "weighted_f1", "log_loss", "roc_auc", "roc_auc_note", "ece", "brier",
               "absent_classes", "per_class", "confusion_matrix")
MULTILABEL_REPORT_KEYS = (
    "multi_label", "n_examples", "n_skipped", "subset_accuracy", "hamming_loss", "micro_precision", "micro_recall",
    "micro_f1", "macro_precision", "macro_recall", "macro_f1", "samples_precision", "samples_recall", "samples_f1",
    "weighted_f1", "label_ranking_average_precision", "log_loss", "roc_auc", "roc_auc_note", "ece", "brier",
    "label_cardinality", "predicted_cardinality", "absent_classes", "per_class", "unknown_labels")


# === Test tiers ===
# As keras-hub gates its size markers here: `integration` marks a test that runs fusionapp's training
# or starts a process, so `pytest -m "not integration"` is the fast tier. A test that uses one of these
# fixtures (each trains a run or builds full-size backbones) is marked here; any other test that trains
# or starts a process carries the marker itself. Every `slow` test is an integration test too.
INTEGRATION_FIXTURES = {"trained_run", "text_backbone_run", "backbone_run", "weights_files", "server", "served",
                        "overconfident_run", "region_run", "multilabel_run"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("slow") or INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


# === The command line and its errors ===
def run_cli(capsys, *args):
    """Run `fusionapp ARGS` in-process; return (exit code, stdout, stderr)."""
    from fusionapp.cli import main

    try:
        main([str(arg) for arg in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, *fragments, exit_code=1):
    """One `error:` line holding every fragment, the exit code, and no traceback."""
    assert code == exit_code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_usage_error(code, err, *fragments):
    """click's usage error: exit code 2, `Error:` with every fragment, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    assert all(fragment in err for fragment in fragments), err


# === Files ===
def write_csv(path, rows, **options):
    """rows (dicts with the same keys) -> a CSV table at `path`; returns the path as a string."""
    with open(path, "w", newline="", encoding=options.pop("encoding", "utf-8")) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), **options)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def heatmap_array(heatmap: str) -> np.ndarray:
    """An explanation's heat map PNG (base64) back to its [height, width] intensities in [0, 1] (its alpha)."""
    import base64

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(heatmap))).convert("RGBA"))[..., 3] / 255.0


def image_bytes(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    from PIL import Image

    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# === Data and runs ===
@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    from fusionapp.data.demo import make_demo

    out = tmp_path_factory.mktemp("demo")
    make_demo(str(out), rows=160, seed=1)
    return out


@pytest.fixture(scope="session")
def demo_table(demo_dir):
    return str(demo_dir / "demo.csv")


@pytest.fixture
def demo_rows(demo_dir):
    """The demo table's rows with absolute image paths, to edit and write elsewhere."""
    rows = read_csv(demo_dir / "demo.csv")
    for row in rows:
        row["image"] = str(demo_dir / row["image"])
    return rows


@pytest.fixture(scope="session")
def trained_run(demo_table, tmp_path_factory):
    """One tiny run on the demo table shared by the evaluate/predict tests."""
    from fusionapp import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train(demo_table, str(out), epochs=2, tabular_col=("price", "seller"), verbose=0, **TINY_MODEL)


TEXT_BACKBONE_SETTINGS = {**TINY_MODEL, "sequence_length": 16, "tabular_col": ("price", "seller")}


@pytest.fixture(scope="session")
def text_backbone_run(demo_table, tmp_path_factory):
    """(run folder, preset folder): a tiny run whose text branch is a 2-layer BERT preset (random
    weights, built here), which is moved to another folder once the run is trained: nothing after
    training may need it where it was."""
    from fusionapp import train
    from text_presets import tiny_bert_preset

    folder = tmp_path_factory.mktemp("presets")
    preset = tiny_bert_preset(str(folder / "bert"))
    run = train(demo_table, str(tmp_path_factory.mktemp("runs") / "bert"), epochs=2, verbose=0,
                text_backbone=preset, **TEXT_BACKBONE_SETTINGS)
    shutil.move(preset, str(folder / "moved"))
    return run, str(folder / "moved")


BACKBONES = ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_v2_b0", "resnet50_v2")


@pytest.fixture(scope="session")
def weights_files(tmp_path_factory):
    """Backbone name -> a .weights.h5 file of it with seeded random weights (nothing is downloaded)."""
    import keras

    from fusionapp.model.backbones import build_backbone

    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in BACKBONES:
        keras.utils.set_random_seed(7)
        files[name] = str(folder / f"{name}.weights.h5")
        build_backbone(name, 32).save_weights(files[name])
    return files


@pytest.fixture(scope="session")
def backbone_run(demo_table, weights_files, tmp_path_factory):
    """name -> a tiny run on the demo table whose image branch is that backbone, with the weights
    of `weights_files`; each trained once per session. resnet50_v2's has the multi-kernel head, the
    others pool."""
    from fusionapp import train

    runs = {}

    def run(name: str) -> str:
        if name not in runs:
            out = tmp_path_factory.mktemp("runs") / name
            runs[name] = train(demo_table, str(out), epochs=1, tabular_col=("price", "seller"), verbose=0,
                               image_backbone=name, backbone_weights=weights_files[name],
                               **({"backbone_head": "multi-kernel", "image_filters": (16, 32)} if name == "resnet50_v2"
                                  else {}), **TINY_BACKBONE)
        return runs[name]

    return run


TRAIN_SCRIPT = """
import sys
from fusionapp import train
train(sys.argv[1], sys.argv[2], epochs=4, patience=10, verbose=0, **{tiny})
"""


def start_training(table, run_dir, prelude: str = "", signal_at: str | None = None, **settings):
    """A 4-epoch tiny training in a child process; `prelude` runs before it, and `signal_at` is its
    FUSIONAPP_TEST_SIGNAL (fusionapp/runs/files.py): e.g. "KILL epoch0003.keras" or "STOP history.csv"."""
    from fusionapp.settings import applicable

    script = prelude + TRAIN_SCRIPT.format(tiny=repr(applicable({**TINY_MODEL, **settings})))
    return start_python(["-c", script, table, str(run_dir)], signal_at)


def start_python(args, signal_at: str | None = None):
    """`python ARGS` in a child process that sends itself a signal at the write `signal_at` names."""
    env = {**os.environ, "FUSIONAPP_TEST_SIGNAL": signal_at or ""}
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def killed_at(process, timeout=300):
    """Wait for a child started with signal_at="KILL ..." to kill itself there; fail if it ended otherwise."""
    try:
        _, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL, f"exit code {process.returncode}: {err.decode()[-2000:]}"


def stopped_at(process):
    """Wait (no polling) for a child started with signal_at="STOP ..." to stop itself there; SIGCONT resumes it."""
    _, status = os.waitpid(process.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the child ended (status {status}) before it reached the point to stop"


# === The exported SavedModel ===
SAVED_MODEL_SCRIPT = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
rows = json.load(open(sys.argv[2]))
out = serve(image=tf.constant([open(r["image"], "rb").read() if r["image"] else b"" for r in rows]),
            text=tf.constant([r["text"] for r in rows]),
            tabular_price=tf.constant([float(r["price"]) if r["price"] else float("nan") for r in rows]),
            tabular_seller=tf.constant([r["seller"] for r in rows]))
assert "fusionapp" not in sys.modules
print(json.dumps({"outputs": sorted(out), "probabilities": out["probabilities"].numpy().tolist(),
                  "labels": [label.decode() for label in out["predicted_label"].numpy()],
                  "missing": [names.decode() for names in out["missing"].numpy()]}))
"""


def exported_outputs(export_dir, rows, tmp_path, prelude: str = ""):
    """The SavedModel's outputs for `rows`, computed in a process that imports only TensorFlow (and
    what `prelude` imports)."""
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    done = subprocess.run([sys.executable, "-c", prelude + SAVED_MODEL_SCRIPT, str(export_dir),
                           str(tmp_path / "rows.json")],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# === A browser ===
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="no chromium installed (apt-get install chromium)")


@contextmanager
def browser_page():
    """A page of headless Chromium driven by Playwright, with a fresh temporary profile of its own."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


# === The server ===
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url, body=None, content_type="application/json", method=None):
    """(status, parsed JSON body) of one request."""
    headers = {"Content-Type": content_type} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_json(url, payload):
    return http(url, json.dumps(payload).encode())


def asgi_post_json(app, path, payload):
    """(status, parsed JSON body) of one POST to an ASGI app, called in-process (no server)."""
    return asgi_request(app, "POST", path, json.dumps(payload).encode())


def asgi_request(app, method, path, body=b"", content_type="application/json"):
    """(status, parsed JSON body) of one request to an ASGI app, called in-process (no server)."""
    import asyncio

    path, _, query = path.partition("?")
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    return status, json.loads(b"".join(message.get("body", b"") for message in sent
                                       if message["type"] == "http.response.body"))


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="session")
def served(trained_run):
    """`fusionapp serve` on the tiny run, on a free loopback port (a 1 MB body limit): a `Served`."""
    with serving_process(trained_run) as running:
        yield running


@pytest.fixture(scope="session")
def server(served):
    """The URL of `served`."""
    return served.url


@contextmanager
def serving(run_dir):
    """`fusionapp serve RUN_DIR` on a free loopback port (a 1 MB body limit), yielding its URL."""
    with serving_process(run_dir) as running:
        yield running.url


class Served:
    """A `fusionapp serve` process: its URL, the process, and the lines of its stderr, read as they
    come (so that the access log never fills the pipe)."""

    def __init__(self, url: str, process):
        self.url, self.process = url, process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for_line(self, predicate, timeout: float = 60, since: int = 0) -> str:
        """The first stderr line from the `since`-th on that `predicate` holds for, waiting for it
        until `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines[since:] if predicate(line)), None)
                left = deadline - time.monotonic()
                if found is not None or self._ended or left <= 0:
                    break
                self._changed.wait(left)
        assert found is not None, "\n".join(self.lines[-20:]) or "no line"
        return found


@contextmanager
def serving_process(run_dir, *flags, ready_timeout: float = 120):
    """`fusionapp serve RUN_DIR FLAGS` on a free loopback port (a 1 MB body limit): a `Served`, once
    /ready answers 200, within `ready_timeout` seconds."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fusionapp", "serve", run_dir, "--port", str(port),
                                "--max-body-mb", "1", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    running = Served(f"http://127.0.0.1:{port}", process)
    try:
        wait_ready(running, time.monotonic() + ready_timeout)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_ready(running: Served, deadline: float) -> None:
    """Wait for a server's /ready to answer 200, until `deadline` (time.monotonic()): first for its
    `Ready in ...` line (a process prints it once it has its model), then on /ready itself, which a
    `--workers` process answers only once its server listens, a moment after that line."""
    running.wait_for_line(lambda line: line.startswith("Ready in "), deadline - time.monotonic())
    while True:
        try:
            assert http(running.url + "/ready") == (200, {"status": "ready"})
            return
        except OSError:  # not listening yet
            assert running.process.poll() is None, "\n".join(running.lines[-20:])
            assert time.monotonic() < deadline, "/ready did not answer"
            time.sleep(0.05)  # the poll's pace, within the deadline


def read_rows(path) -> list[dict]:
    """Every row of a table as a dict of cells, as fusionapp reads it."""
    from fusionapp.data.tables import iter_table

    return [row for chunk in iter_table(str(path)) for row in chunk.rows]
