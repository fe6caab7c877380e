"""The real server on a free loopback port, spoken to over HTTP."""

import base64
import concurrent.futures
import json

import pytest

from conftest import DEMO_CLASSES, browser_page, http, multipart, needs_chromium, post_json


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
    items = [good, {"image": "%%%", "text": "x"}, {"image": base64.b64encode(pair["image"][:200]).decode(), "text": "x"},
             {"image": good["image"], "text": ""}, good]
    status, body = post_json(server + "/predict/batch", {"items": items})
    assert status == 200 and len(body["predictions"]) == 5
    first, bad_base64, corrupt, empty_text, last = body["predictions"]
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
