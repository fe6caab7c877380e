"""The real server on a free loopback port, spoken to over HTTP."""

import asyncio
import base64
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.client import HTTPConnection
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest

from conftest import (DEMO_CLASSES, asgi_request, assert_usage_error, browser_page, http, multipart, needs_chromium,
                      post_json, run_cli, serving_process)

# The keys of GET /metadata, as docs/serving.md lists them.
METADATA_KEYS = {"classes", "multi_label", "label_sep", "inputs", "run", "model_version", "versions",
                 "validation_metrics", "validation_accuracy", "validation_micro_f1"}


def declared_too_large(url):
    """Declare a 2 MB body and wait for the answer before sending it: the server must refuse from
    the header alone (sending the body first would race the server closing the connection)."""
    address = urlparse(url)
    connection = HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    try:
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def pair(demo_dir):
    return {"image": (demo_dir / "images" / "00003.png").read_bytes(), "text": "listing one worn vase, cash only",
            "price": "31.5", "seller": "east"}


def test_the_page_has_an_icon(server):
    with urllib.request.urlopen(server + "/favicon.ico", timeout=30) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("image/svg+xml")
        assert response.read().startswith(b"<svg")


def test_health_and_the_documented_metadata(server):
    assert http(server + "/health") == (200, {"status": "ok"})
    status, metadata = http(server + "/metadata")
    assert status == 200 and set(metadata) == METADATA_KEYS
    documented = (Path(__file__).parent.parent / "docs" / "serving.md").read_text()
    assert all(f"`{key}`" in documented for key in METADATA_KEYS)
    assert metadata["classes"] == DEMO_CLASSES and metadata["multi_label"] is False and metadata["label_sep"] is None
    assert metadata["inputs"] == {
        "image": {"kind": "image", "size": 32},
        "text": {"kind": "text", "max_chars": 10000, "sequence_length": None},  # the bag encoder reads it whole
        "tabular": {"kind": "tabular", "columns": {"price": {"kind": "numeric"}, "seller": {
            "kind": "categorical", "categories": ["east", "north", "south", "west"]}}}}
    assert metadata["run"] == "tiny" and set(metadata["versions"]) == {"fusionapp", "tensorflow", "keras"}
    assert metadata["validation_accuracy"] == metadata["validation_metrics"]["accuracy"]
    assert metadata["validation_micro_f1"] is None and "per_class" not in metadata["validation_metrics"]


def test_a_text_backbone_runs_metadata_holds_no_path_and_no_serialised_config(text_backbone_run):
    """The preprocessor of a --text-backbone run records the preset's folder, its architecture and its
    tokenizer; /metadata publishes none of them."""
    from fusionapp.runs.load import load_run
    from fusionapp.serve.app import create_app

    run, moved = text_backbone_run
    preset = os.path.join(os.path.dirname(moved), "bert")  # where it was when the run was trained
    status, metadata = asgi_request(create_app(load_run(run)), "GET", "/metadata")
    assert status == 200 and set(metadata) == METADATA_KEYS
    assert metadata["inputs"]["text"] == {"kind": "text", "max_chars": 10000, "sequence_length": 16}
    keys, strings = leaves(metadata)
    # (the run's own folder happens to be called "bert" too: its name is all /metadata says of it)
    assert metadata["run"] == os.path.basename(run)
    strings.remove(metadata["run"])
    assert not [s for s in strings if os.sep in s or preset in s or os.path.basename(preset) in s
                or os.path.basename(os.path.dirname(preset)) in s]
    assert not {"folder", "source", "tokenizer", "backbone", "config", "output"} & keys
    # a serialised architecture or tokenizer is kilobytes of JSON; the longest string here is a date
    assert max(len(s) for s in strings) < 40


def leaves(value, keys=None, strings=None) -> tuple[set, list]:
    """Every key and every string value of a JSON value, however deep."""
    keys, strings = set() if keys is None else keys, [] if strings is None else strings
    if isinstance(value, dict):
        keys.update(value)
        for item in value.values():
            leaves(item, keys, strings)
    elif isinstance(value, list):
        for item in value:
            leaves(item, keys, strings)
    elif isinstance(value, str):
        strings.append(value)
    return keys, strings


def test_requests_are_parsed_against_the_inputs_the_model_takes():
    from fusionapp.serve.requests import BadRequest, json_item
    from fusionapp.serve.schema import ModelInputs, ModelSchema, RequestSchema, TabularColumn, TextInput

    schema = ModelSchema(classes=("a", "b"), multi_label=False, label_sep=None, run="r", model_version=None,
                         versions={}, validation_metrics=None,
                         inputs=ModelInputs(None, TextInput(100, None), (TabularColumn("price", "numeric"),)))
    text_only = RequestSchema.of(schema)
    assert text_only == RequestSchema(image=False, text=True, tabular=("price",))
    assert json_item({"text": "hi", "image": None, "tabular": {"price": 3}}, text_only) == \
        {"image": None, "text": "hi", "tabular": {"price": 3}}
    refusals = [({"text": "hi", "image": base64.b64encode(b"png").decode()}, text_only,
                 "this model takes no image (its inputs: text, tabular)"),
                ({"text": "words"}, RequestSchema(image=True, text=False, tabular=()),
                 "this model takes no text (its inputs: image)"),
                ({"text": "hi", "tabular": {"colour": "red"}}, text_only, "unknown tabular column 'colour' (this "
                                                                          "model's: price)")]
    for payload, request_schema, message in refusals:
        with pytest.raises(BadRequest) as refused:
            json_item(payload, request_schema)
        assert str(refused.value) == message and refused.value.status == 422
    # an input sent empty is an input not sent
    assert json_item({"text": " ", "image": None}, RequestSchema(image=True, text=False, tabular=()))["text"] == " "


def test_json_and_multipart_predictions_equal_the_cli(server, pair, trained_run, demo_dir, tmp_path):
    from fusionapp import predict

    image_path = tmp_path / "x.png"
    image_path.write_bytes(pair["image"])
    expected = predict(trained_run, image=str(image_path), text=pair["text"],
                       tabular={"price": pair["price"], "seller": pair["seller"]})
    status, result = post_json(server + "/predict", {"image": base64.b64encode(pair["image"]).decode(),
                                                     "text": pair["text"],
                                                     "tabular": {"price": 31.5, "seller": "east"}})
    assert status == 200 and result["predicted_label"] == expected["predicted_label"]
    for name, p in expected["probabilities"].items():
        assert result["probabilities"][name] == pytest.approx(p, abs=1e-5)
    body, content_type = multipart({"text": pair["text"], "price": pair["price"], "seller": pair["seller"]},
                                   {"image": ("x.png", pair["image"])})
    status, form_result = http(server + "/predict", body, content_type)
    assert status == 200
    assert form_result["probabilities"] == pytest.approx(result["probabilities"], abs=1e-6)
    assert expected["missing"] == result["missing"] == form_result["missing"] == []


def test_batch_answers_every_item(server, pair):
    good = {"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}
    # more than four images: one decoding call checks them all, and the corrupt one is then found alone
    items = [good, {"image": "%%%", "text": "x"}, {"image": base64.b64encode(pair["image"][:200]).decode(), "text": "x"},
             {"image": good["image"], "text": ""}, good, good, good]
    status, body = post_json(server + "/predict/batch", {"items": items})
    assert status == 200 and len(body["predictions"]) == 7
    first, bad_base64, corrupt, empty_text, last, *_ = body["predictions"]
    assert first["predicted_label"] == last["predicted_label"] and first["missing"] == last["missing"]
    assert first["probabilities"] == pytest.approx(last["probabilities"], abs=1e-6)
    assert "not valid base64" in bad_base64["error"]
    assert "cannot be decoded" in corrupt["error"]
    # a missing text is allowed; no tabular values were sent either
    assert empty_text["missing"] == ["text", "tabular"] and "predicted_label" in empty_text


@pytest.mark.parametrize("case,status,fragment", [
    ("not_json", 400, "not valid JSON"),
    ("no_inputs", 422, "no inputs: every input of this row is empty"),
    ("deeply_nested", 400, "nested too deeply"),
    ("lone_surrogate", 400, "not valid Unicode"),
    ("nested_tabular_value", 422, "is not a number"),
    ("text_not_a_string", 400, "'text' must be a string"),
    ("not_an_image", 422, "not a JPEG, PNG, GIF or BMP"),
    ("corrupt_image", 422, "cannot be decoded"),
    ("unknown_column", 422, "unknown tabular column 'colour'"),
    ("bad_number", 422, "'lots' is not a number"),
    ("too_large", 413, "over 1048576 bytes"),
    ("empty_batch", 400, "at least one item"),
    ("unknown_route", 404, "Not Found"),
    ("wrong_method", 405, "Method Not Allowed"),
])
def test_user_mistakes_get_4xx_json(case, status, fragment, server, pair):
    image = base64.b64encode(pair["image"]).decode()
    calls = {
        "not_json": lambda: http(server + "/predict", b"{oops"),
        "no_inputs": lambda: post_json(server + "/predict", {"text": "", "tabular": {}}),
        "deeply_nested": lambda: http(server + "/predict", b"[" * 5000 + b"]" * 5000),
        "lone_surrogate": lambda: http(server + "/predict", b'{"text": "bad \\ud800 text"}'),
        "nested_tabular_value": lambda: post_json(server + "/predict", {"text": "hi", "tabular": {"price": [[1]]}}),
        "text_not_a_string": lambda: post_json(server + "/predict", {"text": {"a": 1}}),
        "not_an_image": lambda: post_json(server + "/predict", {"image": base64.b64encode(b"hello").decode(),
                                                                "text": "hi"}),
        "corrupt_image": lambda: post_json(server + "/predict", {"image": base64.b64encode(pair["image"][:200]).decode(),
                                                                 "text": "hi"}),
        "unknown_column": lambda: post_json(server + "/predict", {"image": image, "text": "hi",
                                                                  "tabular": {"colour": "red"}}),
        "bad_number": lambda: post_json(server + "/predict", {"image": image, "text": "hi",
                                                              "tabular": {"price": "lots"}}),
        "too_large": lambda: declared_too_large(server),
        "empty_batch": lambda: post_json(server + "/predict/batch", {"items": []}),
        "unknown_route": lambda: http(server + "/nowhere"),
        "wrong_method": lambda: http(server + "/predict"),
    }
    code, body = calls[case]()
    assert code == status and fragment in body["error"], body


def test_json_and_forms_take_one_path_with_one_error_rule(server, pair):
    """POST /predict has one implementation: a JSON body and a multipart form carrying the same
    mistake get the same answer, with or without ?explain."""
    image = pair["image"][:200]  # cut short: it does not decode
    cases = [("", {"text": "hi", "tabular": {"colour": "red"}}, {}),
             ("", {"text": " ", "tabular": {}}, {}),
             ("?explain=maybe", {"text": "hi"}, {}),
             ("?explain=1", {"text": "hi", "image": base64.b64encode(image).decode()}, {"image": ("x.png", image)}),
             ("", {"text": "hi", "image": base64.b64encode(image).decode()}, {"image": ("x.png", image)})]
    for query, payload, files in cases:
        fields = {"text": payload["text"], **payload.get("tabular", {})}
        body, content_type = multipart(fields, files)
        as_json, as_form = post_json(server + "/predict" + query, payload), http(server + "/predict" + query, body,
                                                                                 content_type)
        assert as_json == as_form and as_json[0] in (400, 422), (query, payload, as_json, as_form)


def test_readiness_is_decided_by_the_app_alone():
    """Until the model is attached, /ready is 503 and so is every route but /health and /metrics."""
    from fusionapp.serve.app import ServingApp

    app = ServingApp()
    assert asgi_request(app, "GET", "/ready") == (503, {"status": "the model is loading"})
    assert asgi_request(app, "GET", "/health") == (200, {"status": "ok"})
    for method, path in (("GET", "/metadata"), ("POST", "/predict"), ("POST", "/predict/batch"), ("GET", "/")):
        assert asgi_request(app, method, path, b"{}") == (503, {"error": "the model is loading"})
    app.attach(object())  # what the routes need of it is not asked by /ready
    assert app.ready and asgi_request(app, "GET", "/ready") == (200, {"status": "ready"})


def test_one_access_log_line_per_request(served, pair):
    since = len(served.lines)
    status, _ = post_json(served.url + "/predict", {"text": pair["text"], "tabular": {"seller": "north"}})
    assert status == 200
    assert post_json(served.url + "/predict/batch", {"items": [{"text": "a"}, {"text": "b"}]})[0] == 200
    assert post_json(served.url + "/predict?explain=1", {"text": "a"})[0] == 200
    assert http(served.url + "/nowhere/%0Aforged")[0] == 404
    line = r" \d+\.\d ms"
    assert re.fullmatch(rf"POST /predict 200{line} batch=\d+", served.wait_for_line(
        lambda text: text.startswith("POST /predict 200"), since=since))
    for expected in (rf"POST /predict/batch 200{line} items=2", rf"POST /predict\?explain=1 200{line} explained",
                     rf"GET /nowhere/%0Aforged 404{line}"):
        served.wait_for_line(lambda text: re.fullmatch(expected, text), since=since)


def test_the_access_log_goes_to_stderr_unless_turned_off(trained_run, capsys, monkeypatch):
    from fusionapp.serve import process
    from fusionapp.serve.app import ServingApp
    from fusionapp.settings import ServeSettings

    for settings, lines in ((ServeSettings(), 1), (ServeSettings(access_log=False), 0)):
        assert asgi_request(ServingApp(settings), "GET", "/health")[0] == 200
        err = capsys.readouterr().err
        assert len(re.findall(r"^GET /health 200 \d+\.\d ms$", err, re.MULTILINE)) == lines, err
    given = []
    monkeypatch.setattr(process, "run_server", lambda model, host, port, settings: given.append(settings))
    for flags, expected in (((), True), (("--no-access-log",), False), (("--access-log",), True)):
        assert run_cli(capsys, "serve", trained_run, *flags)[0] == 0
        assert given.pop().access_log is expected


def test_the_warm_up_follows_max_batch_within_its_budget(trained_run, monkeypatch):
    """Every batch size up to --max-batch (past the 64 it once stopped at), smallest first, until the
    next would take the sizes after the first past their budget; a batch of n is made to take n
    tenths of a second here, on a clock of the test's own."""
    from types import SimpleNamespace

    from fusionapp.runs.load import load_run
    from fusionapp.serve import predictor as module

    sizes, now = [], [0.0]

    def predict(items, explain=False):
        sizes.append(len(items))
        now[0] += 0.1 * len(items)
        return [{"predicted_label": "x"}] * len(items)

    monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    warming = module.RequestPredictor(load_run(trained_run))
    warming.predict = predict
    warming.warm_up(100)
    assert sizes == list(range(1, 101)) and warming.warmed.largest == 100
    sizes.clear()
    # the budget: half of loading (1.9 s) and the first call (0.1 s); 2, 3 and 4 take 0.9 s of it, and
    # 5 would take 0.5 s more
    warming.warm_up(100, load_s=1.9)
    assert sizes == [1, 2, 3, 4] and warming.warmed.largest == 4
    assert warming.warmed.seconds == pytest.approx(1.0)


def test_a_batch_is_checked_in_full_only_when_an_image_does_not_decode(trained_run, pair):
    """The server's batches skip the image decoding and no-input checks that the raw-input function
    repeats; the answers must be those of the full check either way."""
    from fusionapp.data.checks import NO_INPUTS
    from fusionapp.runs.load import load_run
    from fusionapp.serve.predictor import RequestPredictor

    predictor = RequestPredictor(load_run(trained_run))
    good = {"image": pair["image"], "text": pair["text"], "tabular": {"seller": "east"}}
    nothing = {"image": None, "text": " ", "tabular": {"price": ""}}
    corrupt = {**good, "image": pair["image"][:200]}
    alone = predictor.predict([good])[0]
    clean, mixed = predictor.predict([good, nothing, good]), predictor.predict([good, nothing, corrupt, good])
    for answers in (clean, mixed):
        assert answers[1] == {"error": NO_INPUTS}
        for answer in (answers[0], answers[-1]):
            assert answer["predicted_label"] == alone["predicted_label"]
            assert answer["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)
    assert "cannot be decoded" in mixed[2]["error"]


def test_missing_image_is_answered_and_reported(server, pair):
    status, body = post_json(server + "/predict", {"text": pair["text"]})
    assert status == 200 and body["missing"] == ["image", "tabular"] and "predicted_label" in body


def test_concurrent_requests_are_safe(server, pair):
    payload = {"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: post_json(server + "/predict", payload), range(32)))
    assert all(status == 200 for status, _ in results)
    first = results[0][1]["probabilities"]
    for _, body in results:
        assert body["probabilities"] == pytest.approx(first, abs=1e-6)


@needs_chromium
def test_web_page_in_a_headless_browser(server, pair, tmp_path):
    image_path = tmp_path / "shape.png"
    image_path.write_bytes(pair["image"])
    _, expected = post_json(server + "/predict", {"image": base64.b64encode(pair["image"]).decode(),
                                                  "text": pair["text"], "tabular": {"price": 31.5, "seller": "east"}})
    with browser_page() as page:
        page.goto(server + "/")
        page.wait_for_selector("#tab-price")
        page.set_input_files("#image", str(image_path))
        assert page.locator("#preview").is_visible()
        page.fill("#text", pair["text"])
        page.fill("#tab-price", "31.5")
        # a categorical column is a select box of the model's categories, the empty choice missing
        options = page.locator("#tab-seller option").all_inner_texts()
        assert page.locator("#tab-seller").evaluate("e => e.tagName") == "SELECT"
        assert options[0] == "(missing)" and "east" in options[1:]
        page.select_option("#tab-seller", "east")
        page.click("#submit")
        page.wait_for_selector("#label")
        assert page.inner_text("#label") == expected["predicted_label"]
        bars = page.locator(".bar")
        assert bars.count() == 4
        shown = float(page.locator(f'.bar[data-label="{expected["predicted_label"]}"] .p').inner_text())
        assert shown == pytest.approx(expected["confidence"], abs=1e-3)
        # The explanation is asked for by default (tests/test_explanations.py looks at it).
        page.wait_for_selector("#explanation")
        assert "Unit: change in the explained class's probability" in page.inner_text("#explanation")
        # without its image: the page names the missing input, and the explanation gives it no figure
        page.set_input_files("#image", [])
        page.click("#submit")
        page.wait_for_selector("#missing")
        assert "Answered without: image" in page.inner_text("#missing")
        page.wait_for_selector("#explanation")
        assert "No figures for the missing inputs: image" in page.inner_text("#explanation")
        page.fill("#text", "")
        page.fill("#tab-price", "")
        page.select_option("#tab-seller", "")
        page.click("#submit")
        page.wait_for_selector("#error")
        assert "no inputs" in page.inner_text("#error")


def test_body_limit_counts_bytes_that_declare_no_length():
    import asyncio

    from fusionapp.serve.app import BodyLimit

    async def echo_app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def scenario(chunks):
        incoming = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                    for i, chunk in enumerate(chunks)]
        sent = []

        async def receive():
            return incoming.pop(0)

        async def send(message):
            sent.append(message)

        await BodyLimit(echo_app, limit=10)({"type": "http", "headers": [(b"transfer-encoding", b"chunked")]},
                                            receive, send)
        return sent

    refused = asyncio.run(scenario([b"123456", b"789012"]))
    assert refused[0]["status"] == 413 and b"over 10 bytes" in refused[1]["body"]
    accepted = asyncio.run(scenario([b"12345", b"678"]))
    assert accepted[0]["status"] == 200 and accepted[1]["body"] == b"12345678"


# === Under load: batching, backpressure, metrics, shutdown ===
def test_metrics_parse_with_the_prometheus_parser(server, pair):
    from prometheus_client.parser import text_string_to_metric_families

    assert http(server + "/ready") == (200, {"status": "ready"})
    assert post_json(server + "/predict", {"text": pair["text"]})[0] == 200
    with urllib.request.urlopen(server + "/metrics", timeout=30) as response:
        families = {family.name: family for family in text_string_to_metric_families(response.read().decode())}
    assert {"fusionapp_requests", "fusionapp_request_duration_seconds", "fusionapp_batch_size",
            "fusionapp_batch_duration_seconds", "fusionapp_queue_depth", "fusionapp_rejected_requests",
            "fusionapp_model_load_seconds"} <= set(families)
    answered = {(s.labels["route"], s.labels["status"]): s.value for s in families["fusionapp_requests"].samples
                if s.name == "fusionapp_requests_total"}
    assert answered[("/predict", "200")] >= 1
    assert families["fusionapp_model_load_seconds"].samples[0].value > 0


def test_a_client_gone_before_its_body_is_counted_as_499_not_as_a_server_error(served):
    """(and is not logged as one: the handler that says 499 is the one that would log a 500)"""
    import socket

    from prometheus_client.parser import text_string_to_metric_families

    def closed_requests():
        with urllib.request.urlopen(served.url + "/metrics", timeout=30) as response:
            samples = [s for family in text_string_to_metric_families(response.read().decode())
                       for s in family.samples if s.name == "fusionapp_requests_total"]
        return {s.labels["status"]: s.value for s in samples if s.labels["route"] == "/predict"}

    before, since = closed_requests(), len(served.lines)
    address = urlparse(served.url)
    # JSON and a multipart form: the head and part of the body, then the connection closes
    for content_type in (b"application/json", b"multipart/form-data; boundary=xyz"):
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
                         + b"\r\nContent-Length: 1000\r\n\r\n--xyz\r\n")
    for _ in range(2):  # each logged once the server has seen its client go
        since = served.lines.index(served.wait_for_line(lambda line: line.startswith("POST /predict 499"),
                                                        since=since), since) + 1
    after = closed_requests()
    assert after.get("499", 0) == before.get("499", 0) + 2
    assert after.get("500", 0) == before.get("500", 0)


def test_serve_flags_are_checked_by_their_rules(trained_run, capsys):
    code, _, err = run_cli(capsys, "serve", trained_run, "--max-batch", "0")
    assert_usage_error(code, err, "'--max-batch'", "from 1 to 256")
    code, _, err = run_cli(capsys, "serve", trained_run, "--timeout-s", "0")
    assert_usage_error(code, err, "'--timeout-s'", "above 0.0")


class FakeClock:
    """The batcher's clock (fusionapp.serve.batcher.Clock), moved only by `advance`: a wait ends when
    the batcher is notified or the clock is advanced, and timers fire as the clock passes them."""

    def __init__(self):
        self.time, self._timers, self._conditions = 0.0, [], set()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self.time

    def wait(self, condition, timeout) -> None:
        with self._lock:
            self._conditions.add(condition)
        condition.wait()  # the batcher checks the time again after every wake-up

    def call_later(self, loop, delay, callback):
        timer = [self.time + delay, loop, callback]
        with self._lock:
            self._timers.append(timer)
        return SimpleNamespace(cancel=lambda: self._cancel(timer))

    def _cancel(self, timer):
        with self._lock:
            if timer in self._timers:
                self._timers.remove(timer)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.time += seconds
            due = [timer for timer in self._timers if timer[0] <= self.time]
            self._timers = [timer for timer in self._timers if timer[0] > self.time]
            conditions = list(self._conditions)
        for _, loop, callback in due:
            loop.call_soon_threadsafe(callback)
        for condition in conditions:
            with condition:
                condition.notify_all()


class Model:
    """A batcher's `predict`: records each batch, and blocks on the batches `hold` names until the
    test lets them go."""

    def __init__(self, *held):
        self.calls, self.held = [], set(held)
        self.started, self.go = threading.Event(), threading.Event()

    def __call__(self, items):
        self.calls.append(list(items))
        if self.held & set(items):
            self.started.set()
            assert self.go.wait(60)
        return [f"answer {item}" for item in items]


def test_batcher_batches_sheds_and_drops_what_timed_out():
    from fusionapp.serve.batcher import Batcher, Overloaded

    clock, model = FakeClock(), Model("slow")

    async def scenario():
        batcher = Batcher(model, max_batch=8, wait_s=0.05, max_queue=3, timeout_s=0.3, clock=clock)
        # three requests being read: the batch waits for all three, then for its window
        arrivals = [batcher.arrival() for _ in range(3)]
        first = [batcher.put([i], arrival) for i, arrival in enumerate(arrivals)]
        clock.advance(0.05)
        assert [await waiting.answers() for waiting in first] == [["answer 0"], ["answer 1"], ["answer 2"]]
        # the slow batch goes alone (once its window is over); two more queue behind it
        slow = batcher.put(["slow"])
        clock.advance(0.05)
        assert await asyncio.get_running_loop().run_in_executor(None, model.started.wait, 60)
        late = [batcher.put([name]) for name in ("late1", "late2")]
        with pytest.raises(Overloaded, match="at capacity"):
            batcher.put(["a", "b"])  # 2 queued + 2 > 3
        clock.advance(0.3)  # past every timeout: each request gets its 503
        for waiting in (slow, *late):
            with pytest.raises(Overloaded, match="not answered within 0.3 s"):
                await waiting.answers()
        model.go.set()  # the slow batch ends; the late items are dropped, not predicted
        assert await batcher.submit(["after"]) == ["answer after"]

    asyncio.run(scenario())
    assert model.calls == [[0, 1, 2], ["slow"], ["after"]]


def test_batcher_lets_the_clients_it_answered_join_the_requests_that_queued_meanwhile():
    """A request that queued while a batch ran waits (within the window, counted from the answers)
    for the clients of that batch to send again: one batch of three, not one of one and one of two."""
    from fusionapp.serve.batcher import Batcher

    clock, model = FakeClock(), Model("a1")

    async def scenario():
        batcher = Batcher(model, max_batch=8, wait_s=0.2, max_queue=16, timeout_s=10, clock=clock)

        async def closed_loop_client(first):
            answer = await first.answers()
            return answer + await batcher.submit([answer[0][-2] + "2"])

        clients = [asyncio.ensure_future(closed_loop_client(batcher.put([name]))) for name in ("a1", "b1")]
        clock.advance(0.2)  # the first batch's window; then the model holds it
        assert await asyncio.get_running_loop().run_in_executor(None, model.started.wait, 60)
        late = batcher.put(["c1"])  # arrives while the first batch runs
        model.go.set()
        assert await asyncio.gather(*clients) == [["answer a1", "answer a2"], ["answer b1", "answer b2"]]
        assert await late.answers() == ["answer c1"]

    asyncio.run(scenario())
    assert model.calls == [["a1", "b1"], ["c1", "a2", "b2"]]


@pytest.fixture(scope="module")
def loaded_server(trained_run):
    """A server whose batches wait a whole second and whose queue holds 16 items: a burst of
    requests fills it, and its requests are in flight long enough to send SIGTERM among them."""
    with serving_process(trained_run, "--max-queue", "16", "--max-batch", "20", "--batch-wait-ms", "1000",
                         "--grace-s", "300") as running:
        yield running


def _post_outcome(url, payload):
    """(status, Retry-After header) of one POST, or the connection error's type name."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status, None
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")
    except OSError as error:
        return type(error).__name__, None


def test_a_burst_past_the_queue_gets_503_with_retry_after_and_health_answers(loaded_server, pair):
    url = loaded_server.url
    payload = {"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        burst = [pool.submit(_post_outcome, url + "/predict", payload) for _ in range(40)]
        health = []
        while not all(future.done() for future in burst):
            health.append(http(url + "/health"))
        outcomes = [future.result() for future in burst]
    statuses = sorted(status for status, _ in outcomes)
    # 16 fill the queue and wait for their batch; a slow machine may start a few threads after it went
    assert set(statuses) == {200, 503} and statuses.count(200) >= 16, statuses
    assert all(retry == "1" for status, retry in outcomes if status == 503)
    assert health and all(answer == (200, {"status": "ok"}) for answer in health)


def test_sigterm_answers_every_accepted_connection_on_a_busy_machine(loaded_server, pair):
    """Explained and batched requests: some sent before SIGTERM (in flight), the others on
    connections opened before it whose requests go out after it, all while two processes keep both
    cores busy. uvicorn alone reset some of them: those still in the accept queue, and those whose
    request had not been read yet."""
    url, process = loaded_server.url, loaded_server.process
    address = urlparse(url)
    body = json.dumps({"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}).encode()
    paths = ["/predict?explain=1"] * 4 + ["/predict"] * 8  # for each half
    # each half's clients, and this thread
    sent, connected, signalled = threading.Barrier(len(paths) + 1), threading.Barrier(len(paths) + 1), \
        threading.Event()

    def client(index):
        connection = HTTPConnection(address.hostname, address.port, timeout=300)
        try:
            connection.connect()
            if index % 2:  # the second half: connected, its request sent only after SIGTERM
                connected.wait(60)
                assert signalled.wait(60)
            connection.request("POST", paths[index // 2], body, {"Content-Type": "application/json"})
            if not index % 2:
                sent.wait(60)
            response = connection.getresponse()
            return response.status, json.loads(response.read()).get("error")
        except OSError as error:
            return type(error).__name__, str(error)
        finally:
            connection.close()

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        with concurrent.futures.ThreadPoolExecutor(2 * len(paths)) as pool:
            outcomes = [pool.submit(client, index) for index in range(2 * len(paths))]
            sent.wait(60)  # the first half's requests are out
            connected.wait(60)  # the second half's connections are open
            process.send_signal(signal.SIGTERM)
            signalled.set()
            answers = [outcome.result() for outcome in outcomes]
        assert answers == [(200, None)] * len(answers)
        assert process.wait(timeout=120) == 0
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert _post_outcome(url + "/predict", {"text": "x"})[0] == "URLError"  # no longer accepting


@pytest.mark.slow  # moved out of the default suite's 10 minutes (docs/tests.md)
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads the worker processes from Linux's /proc")
def test_two_worker_processes_share_the_port_and_their_metrics_and_stop_on_sigterm(trained_run, server, pair):
    """`--workers 2`: two processes (each loading the model), answers equal to one process's,
    `/metrics` summing both, and SIGTERM stopping both with exit code 0."""
    from prometheus_client.parser import text_string_to_metric_families

    payload = {"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}
    expected = post_json(server + "/predict", payload)[1]
    with serving_process(trained_run, "--workers", "2", "--max-batch", "4") as running:
        url, process = running.url, running.process
        children = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
        # uvicorn's workers are spawned: multiprocessing's spawn_main runs them
        workers = [pid for pid in children if b"spawn_main" in open(f"/proc/{pid}/cmdline", "rb").read()]
        assert len(workers) == 2, children
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post_json(url + "/predict", payload), range(24)))
        assert all(status == 200 for status, _ in answers)
        for _, body in answers:
            assert body["predicted_label"] == expected["predicted_label"]
            assert body["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
        with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
            samples = [s for family in text_string_to_metric_families(response.read().decode()) for s in family.samples]
        served = sum(s.value for s in samples if s.name == "fusionapp_requests_total"
                     and s.labels == {"route": "/predict", "status": "200"})
        assert served == 24
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert all(_gone(pid) for pid in workers)


def _gone(pid: str) -> bool:
    """Whether a process has exited (a zombie has: it waits only to be reaped)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in status)
    except OSError:
        return True
