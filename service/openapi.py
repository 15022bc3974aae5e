"""The OpenAPI document, made to say what the service does (issue 15, item 11).

FastAPI's generated document is the start; :func:`build_openapi` then puts in what it
cannot know: every error is ``ErrorOut`` (FastAPI's ``HTTPValidationError`` is never
sent), any operation may also meet an edge error (``4XX``/``5XX``: 408 slow body, 413,
414, 431, 500), ``TrainParams`` (the strict schema of :mod:`stylenet.params`) types the
training parameters, response headers are declared, and the event stream's events are
described. Installed by :func:`install_openapi`; cached after the first build.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.schemas import ErrorOut, TrainIn
from stylenet.params import json_schema as train_params_schema

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": REF.format(model="ErrorOut")}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


REQUEST_ID = _header("The request's id (the client's X-Request-ID if valid, else a new one)")
RETRY_AFTER = _header("Seconds to wait before retrying", {"type": "integer", "minimum": 1})
HEADERS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    ("/styles", "post", "202"): {"Location": _header("The new style's URL")},
    ("/styles/{style_id}/train", "post", "202"): {"Location": _header("The style's URL")},
    ("/stylize", "post", "200"): {
        "X-Style-Id": _header("The style applied"),
        "X-Style-Version": _header("Its version", {"type": "integer"}),
        "X-Batch-Size": _header("Images in the forward pass", {"type": "integer"}),
        "X-Image-Size": _header("WIDTHxHEIGHT of the result"),
        "Server-Timing": _header("read, decode, load, queue, infer, encode, total (ms)"),
    },
}

ID_ONLY = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
#: Events of ``GET /styles/{id}/events`` and the schema of each one's ``data``.
SSE_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "style": (
        "The style changed (its `id:` is the record's revision)",
        {"$ref": REF.format(model="StyleOut")},
    ),
    "end": (
        "The style reached ready, failed or canceled; the stream ends",
        {
            "type": "object",
            "required": ["id", "status"],
            "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
        },
    ),
    "deleted": ("The style was deleted; the stream ends", ID_ONLY),
    "timeout": ("events_max_s ran out; reconnect", ID_ONLY),
    "error": (
        "The store could not be read; the stream ends",
        {
            "type": "object",
            "required": ["id", "message"],
            "properties": {"id": {"type": "string"}, "message": {"type": "string"}},
        },
    ),
}


def _sse_description() -> str:
    lines = [
        "Server-Sent Events (`event:` name, `data:` one JSON document); comment lines "
        "(`: keep-alive`) every 15 s while nothing changes. Events:"
    ]
    lines += [f"- `{name}`: {text}" for name, (text, _) in SSE_EVENTS.items()]
    return "\n".join(lines)


def _sse_events_schema() -> dict[str, Any]:
    return {name: {"description": text, "data": data} for name, (text, data) in SSE_EVENTS.items()}


def _replace_refs(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {
            k: (new if k == "$ref" and v == old else _replace_refs(v, old, new))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_replace_refs(v, old, new) for v in node]
    return node


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Return the service's OpenAPI document (see the module docstring)."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    doc = _replace_refs(doc, REF.format(model="HTTPValidationError"), ERROR_REF["$ref"])
    schemas = doc["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.setdefault("ErrorOut", ErrorOut.model_json_schema(ref_template=REF))
    train_in = TrainIn.model_json_schema(ref_template=REF)
    schemas.update(train_in.pop("$defs", {}))
    schemas["TrainIn"] = train_in
    schemas["TrainParams"] = train_params_schema(ref_template=REF)
    error = {"description": "An error", "content": {"application/json": {"schema": ERROR_REF}}}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = copy.deepcopy(error["content"])
                    response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID
                    if status in ("409", "429", "503"):
                        response["headers"]["Retry-After"] = RETRY_AFTER
                else:
                    response.setdefault("headers", {})["X-Request-ID"] = REQUEST_ID
                response["headers"].update(HEADERS.get((path, method, status), {}))
            # What any request can meet before or around its route: 400 malformed, 408
            # slow body, 413 too large, 414/431 URL or headers, 422 bad parameters,
            # 500 unexpected, 503 concurrency limit.
            responses.setdefault("4XX", {**copy.deepcopy(error), "description": "Client error"})
            responses.setdefault("5XX", {**copy.deepcopy(error), "description": "Server error"})
    _stylize_limits(doc, app.state.settings.max_side_limit)
    _styles_create(doc)
    _train_body(doc)
    _events(doc)
    return doc


def _stylize_limits(doc: dict[str, Any], max_side_limit: int) -> None:
    # The bound is a setting, so the static schema of StylizeOptions cannot carry it.
    op = doc["paths"]["/stylize"]["post"]
    for parameter in op["parameters"]:
        if parameter["name"] == "max_side":
            _set_maximum(parameter["schema"], max_side_limit)
    form = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    _set_maximum(form["properties"]["max_side"], max_side_limit)


def _set_maximum(schema: dict[str, Any], maximum: int) -> None:
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "integer":
            option["maximum"] = maximum


def _styles_create(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/styles"]["post"]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[1]
    form = doc["components"]["schemas"][ref]
    form["properties"]["params"] = {
        "$ref": REF.format(model="TrainParams"),
        "description": "Training parameters, a JSON object sent as a form field",
    }
    body["encoding"] = {"params": {"contentType": "application/json"}}


def _train_body(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/styles/{style_id}/train"]["post"]
    op["requestBody"] = {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="TrainIn")}}},
    }
    op["responses"]["400"]["description"] = "The body is not JSON (code invalid_json)"


def _events(doc: dict[str, Any]) -> None:
    ok = doc["paths"]["/styles/{style_id}/events"]["get"]["responses"]["200"]
    ok["description"] = _sse_description()
    ok["content"] = {
        "text/event-stream": {
            "schema": {"type": "string", "description": "text/event-stream frames"},
            "x-events": _sse_events_schema(),
        }
    }


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return :func:`build_openapi`'s document (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
