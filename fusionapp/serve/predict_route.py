"""`POST /predict`: one ASGI handler for JSON and multipart requests, with or without `?explain`.

The app hands it every POST /predict before Starlette's routing (the router lists it too, for its
405s), and it reads the body, parses it against the request schema and writes its answer without a
request or response object, except that a multipart form is read by Starlette's parser. For the
JSON request a client under load sends, that halves the event loop's time per request, which a
batch waits on: the clients it answered must read their answers and send again before the next
batch can form.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from fusionapp.serve.access_log import NOTE
from fusionapp.serve.requests import BadRequest, form_item, json_item, parse_json
from fusionapp.serve.responses import error_answer, send_json

EXPLAIN = {"1": True, "true": True, "0": False, "false": False}


class PredictRoute:
    """POST /predict of a `ServingApp` (fusionapp.serve.app): parse, then one path for every request,
    and one error rule (`error_answer`)."""

    def __init__(self, serving):
        self.serving = serving

    async def __call__(self, scope, receive, send):
        model = self.serving.model
        arrival = model.batcher.arrival()
        try:
            explain = _explain(scope["query_string"])
            item = await _request_item(scope, receive, model.requests)
            if item is None:  # the client went away before its body arrived: nobody to answer
                return
            if explain:
                arrival.close()  # explanations are computed one request at a time, outside the queue
                answer = (await run_in_threadpool(model.predictor.predict, [item], True))[0]
                scope[NOTE] = "explained"
            else:
                waiting = model.batcher.put([item], arrival)
                answer = (await waiting.answers())[0]
                scope[NOTE] = f"batch={waiting.batch_size}"
            if "error" in answer:
                raise BadRequest(answer["error"], status=422)
            status, payload, headers = 200, answer, {}
        except Exception as error:  # noqa: BLE001 - each kind gets its own answer (error_answer)
            status, payload, headers = error_answer(error)
        finally:
            arrival.close()
        await send_json(send, status, payload, headers)


def _explain(query: bytes) -> bool:
    if not query:
        return False
    given = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)).get("explain", "0")
    if given not in EXPLAIN:
        raise BadRequest(f"explain={given!r}: must be 1, 0, true or false")
    return EXPLAIN[given]


async def _request_item(scope, receive, schema) -> dict | None:
    """The request's item, or None if the client disconnected before its body arrived."""
    if _is_form(scope["headers"]):
        try:
            return await form_item(Request(scope, receive), schema)
        except ClientDisconnect:
            return None
    body = await _body(receive)
    return None if body is None else json_item(parse_json(body), schema)


def _is_form(headers) -> bool:
    """Whether a request (its ASGI headers) sends a multipart form; any other body is read as JSON."""
    return any(name == b"content-type" and value.startswith(b"multipart/form-data") for name, value in headers)


async def _body(receive) -> bytes | None:
    """The request's whole body, or None if the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
