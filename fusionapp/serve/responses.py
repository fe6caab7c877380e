"""How the server answers: the one rule that turns an error into a status and JSON, and the JSON
answer written straight to ASGI, without a response object."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

from fusionapp.serve.batcher import RETRY_AFTER_S, Overloaded
from fusionapp.serve.prometheus import CLIENT_CLOSED
from fusionapp.serve.requests import BadRequest


def error_answer(error: Exception) -> tuple[int, dict, dict]:
    """The status, JSON and headers of the answer to a request that failed with `error`: the one
    rule every route follows."""
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


async def send_json(send, status: int, payload: dict, headers: dict | None = None) -> None:
    body = JSONResponse(payload).body  # the bytes Starlette's own answers carry
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    head += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
