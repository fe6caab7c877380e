"""The HTTP API (Starlette on uvicorn): one run loaded once, JSON in and out, 4xx for mistakes, 503
when the server is at capacity.

POST /predict         multipart form (image file, text, tabular fields) or JSON {"image": base64, ...};
                      ?explain=1 adds the explanation `predict --explain` gives
POST /predict/batch   JSON {"items": [{"image": base64, "text": ..., "tabular": {...}}, ...]}
GET  /health          {"status": "ok"}: the process is alive
GET  /ready           {"status": "ready"}: the model is loaded and its warm-up prediction ran
GET  /metrics         Prometheus metrics
GET  /metadata        classes, inputs, model version
GET  /                a page to try the model by hand

Predictions of concurrent requests are batched (fusionapp.serve.batcher); explanations are not.
A JSON /predict without a query string, the request a client under load sends, is answered by
`JsonPredict` without going through Starlette's routing, request and response objects: that halves
the event loop's time per request, which a batch waits on (the clients it answered read their
answers and send again while the model has nothing to do).
"""

from __future__ import annotations

import logging
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fusionapp.serve.batcher import RETRY_AFTER_S, Batcher, Overloaded
from fusionapp.serve.prometheus import CLIENT_CLOSED, RequestMetrics, metrics_text
from fusionapp.serve.predictor import RequestPredictor, model_metadata
from fusionapp.serve.requests import BadRequest, form_item, json_body, json_item, parse_json
from fusionapp.settings import MAX_BATCH_ITEMS, ServeSettings

def create_app(run, settings: ServeSettings = ServeSettings(), warm_batches: int = 1):
    """The ASGI app over the loaded `run`, ready to answer: warmed up with a prediction at each
    batch size up to `warm_batches` (the server's processes: --max-batch)."""
    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/metadata", describe, methods=["GET"]),
            Route("/predict", predict_one, methods=["POST"]),
            Route("/predict/batch", predict_batch, methods=["POST"]),
        ],
        exception_handlers={BadRequest: handled_error, Overloaded: handled_error, HTTPException: handled_error,
                            ClientDisconnect: handled_error, Exception: handled_error},
    )
    predictor = RequestPredictor(run)
    predictor.warm_up(warm_batches)
    app.state.predictor = predictor
    app.state.batcher = Batcher(predictor.predict, settings.max_batch, settings.batch_wait_ms / 1000,
                                settings.max_queue, settings.timeout_s)
    app.state.metadata = model_metadata(run)
    app.state.page = resources.files("fusionapp.serve").joinpath("page.html").read_text(encoding="utf-8")
    return RequestMetrics(BodyLimit(JsonPredict(app), settings.max_body_mb * 1024 * 1024))


async def home(request: Request):
    return HTMLResponse(request.app.state.page)


async def health(request: Request):
    return JSONResponse({"status": "ok"})


async def ready(request: Request):
    # create_app returns only once the model is loaded and warmed up; before that, the server
    # process's loader answers this route with 503 (fusionapp.serve.process).
    return JSONResponse({"status": "ready"})


async def metrics(request: Request):
    body, content_type = metrics_text()
    return Response(body, media_type=content_type)


async def describe(request: Request):
    return JSONResponse(request.app.state.metadata)


async def predict_one(request: Request):
    state = request.app.state
    explain = request.query_params.get("explain", "0")
    if explain not in ("0", "1", "true", "false"):
        raise BadRequest(f"explain={explain!r}: must be 1, 0, true or false")
    arrival = state.batcher.arrival()
    try:
        if _is_form(request.scope["headers"]):
            item = await form_item(request, state.metadata)
        else:
            item = json_item(await json_body(request), state.metadata)
        if explain in ("1", "true"):
            arrival.close()
            result = _single_answer((await run_in_threadpool(state.predictor.predict, [item], True))[0])
        else:
            result = await _predicted(state, item, arrival)
    finally:
        arrival.close()
    return JSONResponse(result)


async def _predicted(state, item: dict, arrival) -> dict:
    """The answer to one request's item, through the batcher."""
    return _single_answer((await state.batcher.submit([item], arrival))[0])


def _single_answer(result: dict) -> dict:
    if "error" in result:
        raise BadRequest(result["error"], status=422)
    return result


async def predict_batch(request: Request):
    state = request.app.state
    arrival = state.batcher.arrival()
    try:
        return JSONResponse({"predictions": await _batch_predictions(state, await json_body(request), arrival)})
    finally:
        arrival.close()


async def _batch_predictions(state, body, arrival) -> list:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest('expected {"items": [...]} with at least one item')
    if len(items) > MAX_BATCH_ITEMS:
        raise BadRequest(f"at most {MAX_BATCH_ITEMS} items per batch (got {len(items)})", status=413)
    parsed = []
    for index, raw in enumerate(items):
        try:
            parsed.append(json_item(raw, state.metadata))
        except BadRequest as error:
            parsed.append({"invalid": f"item {index}: {error}"})
    valid = [i for i, item in enumerate(parsed) if "invalid" not in item]
    results = await state.batcher.submit([parsed[i] for i in valid], arrival) if valid else []
    predictions = [{"error": item["invalid"]} if "invalid" in item else None for item in parsed]
    for i, result in zip(valid, results):
        predictions[i] = result if "error" not in result else {"error": f"item {i}: {result['error']}"}
    return predictions


def error_answer(error: Exception) -> tuple[int, dict, dict]:
    """The status, JSON and headers of the answer to a request that failed with `error`."""
    if isinstance(error, BadRequest):
        return error.status, {"error": str(error)}, {}
    if isinstance(error, Overloaded):
        return 503, {"error": str(error)}, {"Retry-After": str(RETRY_AFTER_S)}
    if isinstance(error, HTTPException):
        return error.status_code, {"error": error.detail}, {}
    if isinstance(error, ClientDisconnect):  # nobody will read it; the status is for the metrics
        return CLIENT_CLOSED, {"error": "the client closed the connection before its request was read"}, {}
    # A bug of ours, not the client's: still JSON, and the traceback stays in the server's log.
    logging.getLogger("fusionapp.serve").error("error while answering a request", exc_info=error)
    return 500, {"error": "internal error"}, {}


async def handled_error(request: Request, error: Exception):
    status, payload, headers = error_answer(error)
    return JSONResponse(payload, status_code=status, headers=headers)


class JsonPredict:
    """POST /predict with a JSON body and no query string, answered without Starlette: the same
    parsing, batcher and answers as `predict_one`, one ASGI call with no routing, request or
    response objects. Anything else goes on to the app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/predict" or scope["method"] != "POST" \
                or scope["query_string"] or _is_form(scope["headers"]):
            return await self.app(scope, receive, send)
        state = self.app.state
        arrival = state.batcher.arrival()
        try:
            body = await _body(receive)
            if body is None:  # the client went away
                return
            status, payload, headers = 200, await _predicted(state, json_item(parse_json(body), state.metadata),
                                                             arrival), {}
        except HTTPException:
            raise  # BodyLimit's, answered there
        except Exception as error:  # noqa: BLE001 - each kind gets its own answer, as in the app
            status, payload, headers = error_answer(error)
        finally:
            arrival.close()
        await _send_json(send, status, payload, headers)


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


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not they declare their length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, {"error": f"request body over {self.limit} bytes"})
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        try:
            await self.app(scope, limited_receive, send)
        except HTTPException as error:  # raised outside a route's own handlers
            await _send_json(send, error.status_code, {"error": error.detail})


async def _send_json(send, status: int, payload: dict, headers: dict | None = None) -> None:
    body = JSONResponse(payload).body  # the bytes Starlette's own answers carry
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


