"""Request bodies -> request items, checked against the request schema (fusionapp.serve.schema), with a
4xx for what a client got wrong: JSON (base64 images) or a multipart form. Whether an item's inputs
make a usable row is the row check's to say, as for a table."""

from __future__ import annotations

import base64
import binascii
import json

from starlette.formparsers import MultiPartException
from starlette.requests import Request

from fusionapp.data.formats import cell_text
from fusionapp.serve.schema import RequestSchema


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_json(raw: bytes):
    """A request body's JSON, or the 400 that says why it is not."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON ({error})") from error
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None


def _unicode(value: str, what: str) -> str:
    """JSON allows lone surrogate escapes, which no text encoding can carry."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid Unicode (a lone surrogate escape)") from None
    return value


def json_item(raw, schema: RequestSchema) -> dict:
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
    return _item(image, text, tabular, schema)


async def form_item(request: Request, schema: RequestSchema) -> dict:
    try:
        form = await request.form()
    except MultiPartException as error:
        raise BadRequest(f"cannot read the form ({error.message})") from error
    image = form.get("image")
    data = await image.read() if hasattr(image, "read") else None
    text = form.get("text")
    tabular = {key: value for key, value in form.items() if key not in ("image", "text")}
    return _item(data, text if isinstance(text, str) else None, tabular, schema)


def _item(image, text, tabular: dict, schema: RequestSchema) -> dict:
    """A request item with its inputs checked against what the model takes and its text and tabular
    fields checked as text; whether the inputs make a usable row is the row check's to say."""
    for name, given, taken in (("image", image, schema.image), ("text", text and text.strip(), schema.text)):
        if given and not taken:
            raise BadRequest(f"this model takes no {name} (its inputs: {schema.names()})", status=422)
    unknown = sorted(set(tabular) - set(schema.tabular))
    if unknown:
        raise BadRequest(f"unknown tabular column '{unknown[0]}' (this model's: {', '.join(schema.tabular) or 'none'})",
                         status=422)
    for name, value in tabular.items():
        _unicode(name, "a tabular column name")
        _unicode(cell_text(value), f"tabular column '{name}'")
    return {"image": image, "text": _unicode(text, "'text'") if text else text, "tabular": tabular}
