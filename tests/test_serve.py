"""The real server on a free loopback port, spoken to over HTTP."""

import base64
import concurrent.futures
import json
import os
import time
import urllib.error
import urllib.request

import pytest

from conftest import (DEMO_CLASSES, assert_usage_error, browser_page, http, multipart, needs_chromium, post_json,
                      run_cli, serving_process)


def declared_too_large(url):
    """Declare a 2 MB body and wait for the answer before sending it: the server must refuse from
    the header alone (sending the body first would race the server closing the connection)."""
    import http.client
    from urllib.parse import urlparse

    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
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


def test_health_and_metadata(server):
    assert http(server + "/health") == (200, {"status": "ok"})
    status, metadata = http(server + "/metadata")
    assert status == 200
    assert metadata["classes"] == DEMO_CLASSES
    assert set(metadata["inputs"]) == {"image", "text", "tabular"}
    assert metadata["inputs"]["tabular"]["seller"]["categories"] == ["east", "north", "south", "west"]
    assert metadata["fusionapp_version"]


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
        page.fill("#tab-seller", "east")
        page.click("#submit")
        page.wait_for_selector("#label")
        assert page.inner_text("#label") == expected["predicted_label"]
        bars = page.locator(".bar")
        assert bars.count() == 4
        shown = float(page.locator(f'.bar[data-label="{expected["predicted_label"]}"] .p').inner_text())
        assert shown == pytest.approx(expected["confidence"], abs=1e-3)
        # The explanation is asked for by default (tests/test_explanations.py looks at it).
        page.wait_for_selector("#explanation")
        page.set_input_files("#image", [])
        page.fill("#text", "")
        page.fill("#tab-price", "")
        page.fill("#tab-seller", "")
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


def test_a_client_gone_before_its_body_is_counted_as_499_not_as_a_server_error(server):
    """(and is not logged as one: the handler that says 499 is the one that would log a 500)"""
    import socket
    from urllib.parse import urlparse

    from prometheus_client.parser import text_string_to_metric_families

    def closed_requests():
        with urllib.request.urlopen(server + "/metrics", timeout=30) as response:
            samples = [s for family in text_string_to_metric_families(response.read().decode())
                       for s in family.samples if s.name == "fusionapp_requests_total"]
        return {s.labels["status"]: s.value for s in samples if s.labels["route"] == "/predict"}

    before = closed_requests()
    address = urlparse(server)
    # JSON (answered outside Starlette) and a multipart form (inside it)
    for content_type in (b"application/json", b"multipart/form-data; boundary=xyz"):
        with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
                         + b"\r\nContent-Length: 1000\r\n\r\n--xyz\r\n")
            time.sleep(0.3)  # the server has read the head and waits for the body
    for _ in range(100):
        after = closed_requests()
        if after.get("499", 0) >= before.get("499", 0) + 2:
            break
        time.sleep(0.05)
    assert after.get("499", 0) == before.get("499", 0) + 2
    assert after.get("500", 0) == before.get("500", 0)


def test_serve_flags_are_checked_by_their_rules(trained_run, capsys):
    code, _, err = run_cli(capsys, "serve", trained_run, "--max-batch", "0")
    assert_usage_error(code, err, "'--max-batch'", "from 1 to 256")
    code, _, err = run_cli(capsys, "serve", trained_run, "--timeout-s", "0")
    assert_usage_error(code, err, "'--timeout-s'", "above 0.0")


def test_batcher_batches_sheds_and_drops_what_timed_out():
    import asyncio
    import time

    from fusionapp.serve.batcher import Batcher, Overloaded

    calls = []

    def predict(items):
        calls.append(list(items))
        time.sleep(0.6 if "slow" in items else 0)
        return [f"answer {item}" for item in items]

    async def scenario():
        batcher = Batcher(predict, max_batch=8, wait_s=0.05, max_queue=3, timeout_s=0.3)

        async def request(item):
            arrival = batcher.arrival()
            await asyncio.sleep(0)  # its body is read while the others arrive
            return await batcher.submit([item], arrival)

        gathered = await asyncio.gather(*(request(i) for i in range(3)))
        assert gathered == [["answer 0"], ["answer 1"], ["answer 2"]] and calls == [[0, 1, 2]]
        slow = asyncio.ensure_future(batcher.submit(["slow"]))
        await asyncio.sleep(0.1)  # the slow batch is running; these two wait behind it
        late = [asyncio.ensure_future(batcher.submit([name])) for name in ("late1", "late2")]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="at capacity"):
            await batcher.submit(["a", "b"])  # 2 queued + 2 > 3
        for future in (slow, *late):
            with pytest.raises(Overloaded, match="not answered within 0.3 s"):
                await future
        await asyncio.sleep(0.5)  # the slow batch ends; the late items are dropped, not predicted
        assert await batcher.submit(["after"]) == ["answer after"]

    asyncio.run(scenario())
    assert calls == [[0, 1, 2], ["slow"], ["after"]]


def test_batcher_lets_the_clients_it_answered_join_the_requests_that_queued_meanwhile():
    """A request that queued while a batch ran waits (within the window, counted from the answers)
    for the clients of that batch to send again: one batch of three, not one of one and one of two."""
    import asyncio
    import time

    from fusionapp.serve.batcher import Batcher

    calls = []

    def predict(items):
        calls.append(list(items))
        time.sleep(0.3)
        return [f"answer {item}" for item in items]

    async def scenario():
        batcher = Batcher(predict, max_batch=8, wait_s=0.2, max_queue=16, timeout_s=10)

        async def closed_loop_client(name):
            await batcher.submit([f"{name}1"])  # the first batch: its window, then 0.3 s of model
            return await batcher.submit([f"{name}2"])

        async def late_client():
            await asyncio.sleep(0.3)  # arrives while the first batch runs; its own window ends first
            return await batcher.submit(["c1"])

        answers = await asyncio.gather(closed_loop_client("a"), closed_loop_client("b"), late_client())
        assert answers == [["answer a2"], ["answer b2"], ["answer c1"]]

    asyncio.run(scenario())
    assert calls == [["a1", "b1"], ["c1", "a2", "b2"]]


@pytest.fixture(scope="module")
def loaded_server(trained_run):
    """A server whose batches wait a whole second and whose queue holds 16 items: a burst of
    requests fills it, and its requests are in flight long enough to send SIGTERM among them."""
    with serving_process(trained_run, "--max-queue", "16", "--max-batch", "20", "--batch-wait-ms", "1000") as (url, process):
        yield url, process


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
    url, _ = loaded_server
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


def test_sigterm_during_a_burst_answers_every_accepted_request(loaded_server, pair):
    import signal

    from prometheus_client.parser import text_string_to_metric_families

    url, process = loaded_server
    payload = {"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}

    def queued():
        with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
            text = response.read().decode()
        return next(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                    if sample.name == "fusionapp_queue_depth")

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        burst = [pool.submit(_post_outcome, url + "/predict", payload) for _ in range(12)]
        deadline = time.time() + 30
        while queued() < 12:  # every request read by the server and waiting for its batch
            assert time.time() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        outcomes = [future.result() for future in burst]
    assert outcomes == [(200, None)] * 12
    assert process.wait(timeout=60) == 0
    assert _post_outcome(url + "/predict", payload)[0] == "URLError"  # no longer accepting


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads the worker processes from Linux's /proc")
def test_two_worker_processes_share_the_port_and_their_metrics_and_stop_on_sigterm(trained_run, server, pair):
    """`--workers 2`: two processes (each loading the model), answers equal to one process's,
    `/metrics` summing both, and SIGTERM stopping both with exit code 0."""
    import os
    import signal

    from prometheus_client.parser import text_string_to_metric_families

    payload = {"image": base64.b64encode(pair["image"]).decode(), "text": pair["text"]}
    expected = post_json(server + "/predict", payload)[1]
    with serving_process(trained_run, "--workers", "2", "--max-batch", "4") as (url, process):
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
