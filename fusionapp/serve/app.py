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
"""

from __future__ import annotations

import json
import logging
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fusionapp.serve.batcher import RETRY_AFTER_S, Batcher, Overloaded
from fusionapp.serve.metrics import RequestMetrics, metrics_text
from fusionapp.serve.predictor import RequestPredictor, model_metadata
from fusionapp.serve.requests import BadRequest, form_item, json_body, json_item
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
        exception_handlers={BadRequest: bad_request, Overloaded: overloaded, HTTPException: http_error,
                            Exception: server_error},
    )
    predictor = RequestPredictor(run)
    predictor.warm_up(warm_batches)
    app.state.predictor = predictor
    app.state.batcher = Batcher(predictor.predict, settings.max_batch, settings.batch_wait_ms / 1000,
                                settings.max_queue, settings.timeout_s)
    app.state.metadata = model_metadata(run)
    app.state.page = resources.files("fusionapp.serve").joinpath("page.html").read_text(encoding="utf-8")
    return RequestMetrics(BodyLimit(app, settings.max_body_mb * 1024 * 1024))


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
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            item = await form_item(request, state.metadata)
        else:
            item = json_item(await json_body(request), state.metadata)
        if explain in ("1", "true"):
            arrival.close()
            result = (await run_in_threadpool(state.predictor.predict, [item], True))[0]
        else:
            result = (await state.batcher.submit([item], arrival))[0]
    finally:
        arrival.close()
    if "error" in result:
        raise BadRequest(result["error"], status=422)
    return JSONResponse(result)


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


async def bad_request(request: Request, error: BadRequest):
    return JSONResponse({"error": str(error)}, status_code=error.status)


async def overloaded(request: Request, error: Overloaded):
    return JSONResponse({"error": str(error)}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def http_error(request: Request, error: HTTPException):
    return JSONResponse({"error": error.detail}, status_code=error.status_code)


async def server_error(request: Request, error: Exception):
    # A bug of ours, not the client's: still JSON, and the traceback stays in the server's log.
    logging.getLogger("fusionapp.serve").exception("error while answering %s", request.url.path)
    return JSONResponse({"error": "internal error"}, status_code=500)


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


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


