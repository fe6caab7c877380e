"""The HTTP API (Starlette on uvicorn): one run loaded once, JSON in and out, 4xx for mistakes.

POST /predict         multipart form (image file, text, tabular fields) or JSON {"image": base64, ...};
                      ?explain=1 adds the explanation `predict --explain` gives
POST /predict/batch   JSON {"items": [{"image": base64, "text": ..., "tabular": {...}}, ...]}
GET  /health          {"status": "ok"}
GET  /metadata        classes, inputs, model version
GET  /                a page to try the model by hand
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from fusionapp.data.tables import cell_text

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_BATCH_ITEMS = 256


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def create_app(run, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    predictor = RequestPredictor(run)
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
        explain = request.query_params.get("explain", "0")
        if explain not in ("0", "1", "true", "false"):
            raise BadRequest(f"explain={explain!r}: must be 1, 0, true or false")
        if content_type.startswith("multipart/form-data"):
            item = await _form_item(request, metadata)
        else:
            item = _json_item(await _json_body(request), metadata)
        result = (await run_in_threadpool(predictor.predict, [item], explain in ("1", "true")))[0]
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

    async def server_error(request: Request, error: Exception):
        # A bug of ours, not the client's: still JSON, and the traceback stays in the server's log.
        logging.getLogger("fusionapp.serve").exception("error while answering %s", request.url.path)
        return JSONResponse({"error": "internal error"}, status_code=500)

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metadata", describe, methods=["GET"]),
            Route("/predict", predict_one, methods=["POST"]),
            Route("/predict/batch", predict_batch, methods=["POST"]),
        ],
        exception_handlers={BadRequest: bad_request, HTTPException: http_error, Exception: server_error},
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
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None


class RequestPredictor:
    """Request items -> answers, through the same row check and raw-input function as `predict`.

    An item is {"image": bytes | None, "text": str | None, "tabular": {column: cell}}; its answer is
    {"predicted_label", "confidence", "probabilities", "missing"} (multi-label: {"predicted_labels",
    "probabilities", "thresholds", "missing"}) or {"error": reason}.
    """

    def __init__(self, run):
        from fusionapp.run_rows import run_columns

        self.run = run
        self.columns = run_columns(run)
        # Keras models are not documented as safe to call from several threads at once.
        self._lock = threading.Lock()

    def predict(self, items: list[dict], explain: bool = False) -> list[dict]:
        import numpy as np

        from fusionapp.data.examples import Examples
        from fusionapp.inference import predict_examples
        from fusionapp.prediction import pair_result
        from fusionapp.run_rows import check_rows

        run, count = self.run, len(items)
        examples = Examples(
            source="request", row_numbers=np.arange(1, count + 1), ids=[str(i) for i in range(count)],
            images=[item["image"] or b"" for item in items] if "image" in run.modalities else None,
            images_are_files=False,
            texts=[item["text"] or "" for item in items] if "text" in run.modalities else None,
            tabular={name: [cell_text(item["tabular"].get(name)) for item in items]
                     for name in run.preprocessor.tabular_kinds},
            labels=None, splits=None)
        errors = {row.row - 1: self._message(row) for row in check_rows(run, examples, self.columns, False)}
        good = [i for i in range(count) if i not in errors]
        results = [{"error": errors[i]} if i in errors else None for i in range(count)]
        if good:
            with self._lock:
                predictions = predict_examples(run.model, examples.subset(good))
                if explain:
                    from fusionapp.explanation import explain_examples

                    explanations = explain_examples(run.model, examples.subset(good))
            for position, i in enumerate(good):
                results[i] = pair_result(predictions, position, run.preprocessor.class_names)
                if explain:
                    results[i]["explanation"] = explanations[position]
        return results

    def _message(self, bad_row) -> str:
        if bad_row.column in (self.columns.image, self.columns.text) or not bad_row.column:
            return bad_row.reason
        return f"tabular column '{bad_row.column}': {bad_row.reason}"


def _unicode(value: str, what: str) -> str:
    """JSON allows lone surrogate escapes, which no text encoding can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode (a lone surrogate escape)") from None
    return value


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
    return _item(image, text, tabular, metadata)


async def _form_item(request: Request, metadata: dict) -> dict:
    try:
        form = await request.form()
    except HTTPException:
        raise
    except Exception as error:  # noqa: BLE001 - malformed multipart bodies
        raise BadRequest(f"cannot read the form ({error})") from error
    image = form.get("image")
    data = await image.read() if hasattr(image, "read") else None
    text = form.get("text")
    tabular = {key: value for key, value in form.items() if key not in ("image", "text")}
    return _item(data, text if isinstance(text, str) else None, tabular, metadata)


def _item(image, text, tabular: dict, metadata: dict) -> dict:
    """A request item with its text and tabular fields checked as text; whether the inputs make a
    usable row is the row check's to say, as for a table."""
    columns = metadata["inputs"].get("tabular", {})
    unknown = sorted(set(tabular) - set(columns))
    if unknown:
        raise BadRequest(f"unknown tabular column '{unknown[0]}' (this model's: {', '.join(columns) or 'none'})",
                         status=422)
    for name, value in tabular.items():
        _unicode(name, "a tabular column name")
        _unicode(cell_text(value), f"tabular column '{name}'")
    return {"image": image, "text": _unicode(text, "'text'") if text else text, "tabular": tabular}


def _metadata(run) -> dict:
    import fusionapp

    preprocessor = run.preprocessor
    inputs = {}
    if "image" in run.modalities:
        inputs["image"] = {"type": "image", "size": preprocessor.image_size}
    if "text" in run.modalities:
        inputs["text"] = {"type": "text", **preprocessor.text}
    if "tabular" in run.modalities:
        inputs["tabular"] = {column["name"]: {key: value for key, value in column.items() if key != "name"}
                             for column in preprocessor.tabular}
    return {
        "classes": preprocessor.class_names,
        # multi-label: answers carry predicted_labels and thresholds, not predicted_label and confidence
        "multi_label": preprocessor.multi_label,
        "label_sep": preprocessor.label_sep,
        "inputs": inputs,
        "run": os.path.basename(os.path.abspath(run.path)),
        "model_version": run.config.get("created"),
        "fusionapp_version": fusionapp.__version__,
        "validation_accuracy": _validation_metric(run.path, "accuracy"),  # null for multi-label runs
        **({"validation_micro_f1": _validation_metric(run.path, "micro_f1")} if preprocessor.multi_label else {}),
    }


def _validation_metric(run_dir: str, key: str):
    from fusionapp.artifacts import METRICS_FILE, read_json

    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return None
    return read_json(path).get(key)
