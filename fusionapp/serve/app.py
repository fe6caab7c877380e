"""The HTTP API (Starlette on uvicorn): one run loaded once, JSON in and out, 4xx for mistakes.

POST /predict         multipart form (image file, text, tabular fields) or JSON {"image": base64, ...}
POST /predict/batch   JSON {"items": [{"image": base64, "text": ..., "tabular": {...}}, ...]}
GET  /health          {"status": "ok"}
GET  /metadata        classes, inputs, model version
GET  /                a page to try the model by hand
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH_ITEMS = 256


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def create_app(run, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    from fusionapp.serve.predictor import PairPredictor

    predictor = PairPredictor(run)
    metadata = _metadata(run)
    page = resources.files("fusionapp.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def home(request: Request):
        return HTMLResponse(page)

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def describe(request: Request):
        return JSONResponse(metadata)

    async def predict_one(request: Request):
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            item = await _form_item(request, metadata)
        else:
            item = _json_item(await _json_body(request), metadata)
        result = (await run_in_threadpool(predictor.predict, [item]))[0]
        if "error" in result:
            raise BadRequest(result["error"], status=422)
        return JSONResponse(result)

    async def predict_batch(request: Request):
        body = await _json_body(request)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise BadRequest('expected {"items": [...]} with at least one item')
        if len(items) > MAX_BATCH_ITEMS:
            raise BadRequest(f"at most {MAX_BATCH_ITEMS} items per batch (got {len(items)})", status=413)
        parsed = []
        for index, raw in enumerate(items):
            try:
                parsed.append(_json_item(raw, metadata))
            except BadRequest as error:
                parsed.append({"invalid": f"item {index}: {error}"})
        valid = [i for i, item in enumerate(parsed) if "invalid" not in item]
        results = await run_in_threadpool(predictor.predict, [parsed[i] for i in valid])
        predictions = [{"error": item["invalid"]} if "invalid" in item else None for item in parsed]
        for i, result in zip(valid, results):
            predictions[i] = result if "error" not in result else {"error": f"item {i}: {result['error']}"}
        return JSONResponse({"predictions": predictions})

    async def bad_request(request: Request, error: BadRequest):
        return JSONResponse({"error": str(error)}, status_code=error.status)

    async def http_error(request: Request, error: HTTPException):
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metadata", describe, methods=["GET"]),
            Route("/predict", predict_one, methods=["POST"]),
            Route("/predict/batch", predict_batch, methods=["POST"]),
        ],
        exception_handlers={BadRequest: bad_request, HTTPException: http_error},
    )
    return BodyLimit(app, max_body_bytes)


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


async def _json_body(request: Request):
    raw = await request.body()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON ({error})") from error


def _json_item(raw, metadata: dict) -> dict:
    if not isinstance(raw, dict):
        raise BadRequest("expected a JSON object with image (base64), text and tabular fields")
    image = raw.get("image")
    if image is not None:
        if not isinstance(image, str):
            raise BadRequest("'image' must be a base64 string")
        try:
            image = base64.b64decode(image.split(",", 1)[-1] if image.startswith("data:") else image, validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadRequest(f"'image' is not valid base64 ({error})") from error
    text = raw.get("text")
    if text is not None and not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    tabular = raw.get("tabular") or {}
    if not isinstance(tabular, dict):
        raise BadRequest("'tabular' must be an object of column: value")
    return _complete({"image": image, "text": text, "tabular": tabular}, metadata)


async def _form_item(request: Request, metadata: dict) -> dict:
    try:
        form = await request.form()
    except HTTPException:
        raise
    except Exception as error:  # noqa: BLE001 - malformed multipart bodies
        raise BadRequest(f"cannot read the form ({error})") from error
    image = form.get("image")
    data = await image.read() if hasattr(image, "read") else None
    tabular = {key: value for key, value in form.items() if key not in ("image", "text") and value != ""}
    return _complete({"image": data, "text": form.get("text"), "tabular": tabular}, metadata)


def _complete(item: dict, metadata: dict) -> dict:
    """A missing image or text is allowed (the answer lists it as missing), but not every input."""
    inputs = metadata["inputs"]
    given = [name for name in ("image", "text") if name in inputs and item[name]]
    if not given and not ("tabular" in inputs and item["tabular"]):
        raise BadRequest(f"no inputs: give at least one of {', '.join(inputs)}")
    return item


def _metadata(run) -> dict:
    import fusionapp

    prep = run.preprocessing
    inputs = {}
    if "image" in run.modalities:
        inputs["image"] = {"type": "image", "size": prep.image_size}
    if "text" in run.modalities:
        inputs["text"] = {"type": "text", "tokens": prep.text_tokens, "sequence_length": prep.sequence_length}
    if "tabular" in run.modalities:
        inputs["tabular"] = {column.name: {"kind": column.kind, **({"categories": column.categories}
                                                                  if column.kind == "categorical" else {})}
                             for column in prep.tabular}
    return {
        "classes": prep.class_names,
        "inputs": inputs,
        "run": os.path.basename(os.path.abspath(run.path)),
        "model_version": run.config.get("created"),
        "fusionapp_version": fusionapp.__version__,
        "validation_accuracy": _validation_accuracy(run.path),
    }


def _validation_accuracy(run_dir: str):
    from fusionapp.artifacts import METRICS_FILE, read_json

    path = os.path.join(run_dir, METRICS_FILE)
    return read_json(path).get("accuracy") if os.path.exists(path) else None
