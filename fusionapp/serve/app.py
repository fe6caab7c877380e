"""The HTTP API (Starlette on uvicorn): one run loaded once, JSON in and out, 4xx for mistakes, 503
while the model loads and when the server is at capacity.

POST /predict         multipart form (image file, text, tabular fields) or JSON {"image": base64, ...};
                      ?explain=1 adds the explanation `predict --explain` gives
POST /predict/batch   JSON {"items": [{"image": base64, "text": ..., "tabular": {...}}, ...]}
GET  /health          {"status": "ok"}: the process is alive
GET  /ready           {"status": "ready"}: the model is loaded and warmed up (`ServingApp.ready`)
GET  /metrics         Prometheus metrics
GET  /metadata        the public schema of the run (fusionapp.serve.schema)
GET  /                a page to try the model by hand

Predictions of concurrent requests are batched (fusionapp.serve.batcher); explanations are not.
`POST /predict` is one ASGI handler (fusionapp.serve.predict_route), reached without Starlette's
routing: that halves the event loop's time per request, which a batch waits on.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from fusionapp.serve.access_log import NOTE, AccessLog
from fusionapp.serve.batcher import RETRY_AFTER_S, Batcher, Overloaded
from fusionapp.serve.predict_route import PredictRoute
from fusionapp.serve.predictor import RequestPredictor
from fusionapp.serve.prometheus import REJECTED, RequestMetrics, metrics_text
from fusionapp.serve.requests import BadRequest, json_item, parse_json
from fusionapp.serve.responses import error_answer, send_json
from fusionapp.serve.schema import RequestSchema, model_schema
from fusionapp.settings import MAX_BATCH_ITEMS, ServeSettings

# Answered while the model loads too: liveness, metrics, and readiness itself.
ALWAYS_ANSWERED = ("/health", "/metrics", "/ready")
LOADING = "the model is loading"


@dataclass(frozen=True)
class ServedModel:
    """What answering predictions needs, once the run is loaded and warmed up."""

    predictor: RequestPredictor
    batcher: Batcher
    metadata: dict  # what /metadata answers
    requests: RequestSchema


class ServingApp:
    """The ASGI app of a server process: until `attach` gives it the model (`create_app` does), every
    route but ALWAYS_ANSWERED is answered 503 with Retry-After; a server process answers with one
    that has none while it loads (fusionapp.serve.process)."""

    def __init__(self, settings: ServeSettings = ServeSettings()):
        self.model: ServedModel | None = None
        self.predict = PredictRoute(self)
        self.starlette = Starlette(
            routes=[
                Route("/", home, methods=["GET"]),
                Route("/health", health, methods=["GET"]),
                Route("/favicon.ico", favicon, methods=["GET"]),
                Route("/ready", ready, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
                Route("/metadata", describe, methods=["GET"]),
                Route("/predict", self.predict, methods=["POST"]),
                Route("/predict/batch", predict_batch, methods=["POST"]),
            ],
            exception_handlers={BadRequest: handled_error, Overloaded: handled_error, HTTPException: handled_error,
                                ClientDisconnect: handled_error, Exception: handled_error},
        )
        self.starlette.state.serving = self
        self.page = resources.files("fusionapp.serve").joinpath("page.html").read_text(encoding="utf-8")
        log = AccessLog() if settings.access_log else None
        self.asgi = RequestMetrics(BodyLimit(self._route, settings.max_body_mb * 1024 * 1024), log)

    @property
    def ready(self) -> bool:
        """Whether the server answers predictions: the one rule /ready and every route follow."""
        return self.model is not None

    def attach(self, model: ServedModel) -> None:
        self.model = model

    async def __call__(self, scope, receive, send):
        await self.asgi(scope, receive, send)

    async def _route(self, scope, receive, send):
        if scope["type"] == "http":
            if not self.ready and scope["path"] not in ALWAYS_ANSWERED:
                REJECTED.labels("loading").inc()
                return await send_json(send, 503, {"error": LOADING}, {"Retry-After": str(RETRY_AFTER_S)})
            if scope["path"] == "/predict" and scope["method"] == "POST":
                return await self.predict(scope, receive, send)
        await self.starlette(scope, receive, send)


def create_app(run, settings: ServeSettings = ServeSettings(), warm_batches: int = 1,
               load_s: float | None = None) -> ServingApp:
    """The ASGI app over the loaded `run`, ready to answer: warmed up at batch sizes up to
    `warm_batches` (the server's: --max-batch), within a budget from the `load_s` seconds loading
    took (None: no bound; see RequestPredictor.warm_up)."""
    predictor = RequestPredictor(run)
    predictor.warm_up(warm_batches, load_s)
    schema = model_schema(run)
    batcher = Batcher(predictor.predict, settings.max_batch, settings.batch_wait_ms / 1000, settings.max_queue,
                      settings.timeout_s)
    app = ServingApp(settings)
    app.attach(ServedModel(predictor, batcher, schema.json(), RequestSchema.of(schema)))
    return app


def _serving(request: Request) -> ServingApp:
    return request.app.state.serving


async def home(request: Request):
    return HTMLResponse(_serving(request).page)


# The page's icon, drawn here: a browser asks for /favicon.ico whatever the page says.
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
           'fill="#3b7dd8"/><rect x="3" y="3" width="5" height="5" fill="#fff"/><rect x="9" y="8" width="4" '
           'height="5" fill="#f0821e"/></svg>')


async def favicon(request: Request):
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


async def health(request: Request):
    return JSONResponse({"status": "ok"})


async def ready(request: Request):
    if _serving(request).ready:
        return JSONResponse({"status": "ready"})
    REJECTED.labels("loading").inc()
    return JSONResponse({"status": LOADING}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


async def metrics(request: Request):
    body, content_type = metrics_text()
    return Response(body, media_type=content_type)


async def describe(request: Request):
    return JSONResponse(_serving(request).model.metadata)


async def predict_batch(request: Request):
    model = _serving(request).model
    arrival = model.batcher.arrival()
    try:
        predictions = await _batch_predictions(model, parse_json(await request.body()), arrival)
    finally:
        arrival.close()
    request.scope[NOTE] = f"items={len(predictions)}"
    return JSONResponse({"predictions": predictions})


async def _batch_predictions(model: ServedModel, body, arrival) -> list:
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadRequest('expected {"items": [...]} with at least one item')
    if len(items) > MAX_BATCH_ITEMS:
        raise BadRequest(f"at most {MAX_BATCH_ITEMS} items per batch (got {len(items)})", status=413)
    parsed = []
    for index, raw in enumerate(items):
        try:
            parsed.append(json_item(raw, model.requests))
        except BadRequest as error:
            parsed.append({"invalid": f"item {index}: {error}"})
    valid = [i for i, item in enumerate(parsed) if "invalid" not in item]
    results = await model.batcher.submit([parsed[i] for i in valid], arrival) if valid else []
    predictions = [{"error": item["invalid"]} if "invalid" in item else None for item in parsed]
    for i, result in zip(valid, results):
        predictions[i] = result if "error" not in result else {"error": f"item {i}: {result['error']}"}
    return predictions


async def handled_error(request: Request, error: Exception):
    status, payload, headers = error_answer(error)
    return JSONResponse(payload, status_code=status, headers=headers)


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not they declare their length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await send_json(send, 413, {"error": f"request body over {self.limit} bytes"})
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
            await send_json(send, error.status_code, {"error": error.detail})
