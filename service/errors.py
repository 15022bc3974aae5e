"""The service's exceptions and the ONE place where any exception becomes an HTTP response.

Every error response is JSON ``{"error": {"code", "message", "request_id", ...}}`` with
extra fields where the client can act on them (``style_id``, ``status``, ``field``), and
``Retry-After`` on 429/503. Errors raised on purpose::

    ServiceError                    (this module; status and code on the class)
    ├── BadRequest            400   empty body, not an image, truncated image
    │   └── HostNotAllowed    400   ``host_not_allowed``: a Host this service has not
    │                               (DNS rebinding, :mod:`service.hosts`)
    ├── Unauthorized          401   missing bearer key
    ├── Forbidden             403   wrong bearer key; ``not_owner``: another key's style
    │   └── CrossSite         403   ``cross_site``: a state change sent by another site
    ├── Conflict              409   e.g. a training job for the style already exists
    │   └── StyleNotReady     409   style exists, nothing published yet (carries status)
    ├── UnsupportedMediaType  415   an image format or Content-Type we do not take
    ├── InvalidOption         422   an option the schema cannot express (e.g. max_side)
    ├── TooManyPixels         413   decompression-bomb guard, from the image header
    ├── Overloaded            429   queue full (carries retry_after)
    ├── QuotaExceeded         429   ``training_quota``: the key's trainings or budget
    ├── RateLimited           429   ``rate_limited``: the key's stylize token bucket is empty
    ├── TooManyStreams        429   ``too_many_streams``: the key's or address's event streams
    ├── Unavailable           503   Redis / store down, ``streams_full``, ``would_time_out``
    │                               (carries retry_after)
    └── RequestTimeout        504   no answer within request_timeout_s of arrival
    PayloadTooLarge           413   body over the byte limit (an HTTPException: it is raised
                                    inside ``receive`` and must pass FastAPI's body parser)
    BodyTimeout               408   the body stalled or came too slowly (same reason)

Below the app, :mod:`service.server` answers what never becomes a request with the same
JSON body (:func:`error_body`): 400 malformed HTTP, 408 headers too slow, 414 URL too
long, 431 headers too large or too many.

Errors of :mod:`stylenet` and :mod:`model_store` and validation errors are mapped in
:func:`_map_library_error`; anything else is a 500 whose request id is logged with the
traceback (see :mod:`service.middleware`). Never a 200 carrying an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import model_store
import stylenet
from stylenet.blend import BlendSpecError, StylesIncompatible
from stylenet.video_read import UnsupportedVideo, VideoError, VideoTooLarge

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base class of the errors the service raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> None:
        """Carry ``message``; ``code`` refines the class's code, ``fields`` go in the body."""
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.retry_after = retry_after
        self.headers = dict(headers or {})
        self.fields = fields


class BadRequest(ServiceError):
    """The request cannot be processed as sent (400)."""

    status, code = 400, "bad_request"


class HostNotAllowed(BadRequest):
    """The request's ``Host`` is not a name of this service's (400, :mod:`service.hosts`)."""

    status, code = 400, "host_not_allowed"


class Unauthorized(ServiceError):
    """No bearer key was sent where one is required (401)."""

    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    """The bearer key is not one of the configured keys, or may not do this (403)."""

    status, code = 403, "forbidden"


class CrossSite(Forbidden):
    """A state change a browser sent on behalf of another site's page (403)."""

    status, code = 403, "cross_site"


class NotFound(ServiceError):
    """Nothing of the kind under that name (404), for what is not a library error."""

    status, code = 404, "not_found"


class Conflict(ServiceError):
    """The request conflicts with the current state (409)."""

    status, code = 409, "conflict"


class StyleNotReady(Conflict):
    """The style exists but has no published version yet (409)."""

    status, code = 409, "style_not_ready"


class UnsupportedMediaType(ServiceError):
    """An image format or Content-Type the service does not take (415)."""

    status, code = 415, "unsupported_media_type"


class InvalidOption(ServiceError):
    """An option or input that the request schema cannot reject by itself (422)."""

    status, code = 422, "invalid_option"


class TooManyPixels(ServiceError):
    """The image's header declares more pixels than ``max_pixels`` (413)."""

    status, code = 413, "too_many_pixels"


class Overloaded(ServiceError):
    """The stylize queue is full; retry after ``retry_after`` seconds (429)."""

    status, code = 429, "overloaded"


class QuotaExceeded(ServiceError):
    """The key has as many trainings queued or running as it may, or spent its budget (429)."""

    status, code = 429, "training_quota"


class RateLimited(ServiceError):
    """The key (or client address) sent stylize requests faster than its rate (429)."""

    status, code = 429, "rate_limited"


class TooManyStreams(ServiceError):
    """The key (or client address) holds as many event streams as it may (429)."""

    status, code = 429, "too_many_streams"


class Unavailable(ServiceError):
    """A backing service (Redis, the store) is down (503)."""

    status, code = 503, "unavailable"


class RequestTimeout(ServiceError):
    """No answer within ``request_timeout_s`` of the request's arrival (504)."""

    status, code = 504, "timeout"


class PayloadTooLarge(StarletteHTTPException):
    """The request body exceeds ``max_upload_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


class BodyTimeout(StarletteHTTPException):
    """The request body stalled, or did not arrive within the body deadline (408)."""

    def __init__(self, message: str) -> None:
        # Closing is the only way on: the rest of the body may still be on its way.
        super().__init__(408, message, headers={"Connection": "close"})


#: Error codes of plain HTTP statuses (also used by :mod:`service.server`).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
    503: "unavailable",
}


def error_body(
    code: str, message: str, request_id: str | None, fields: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return the JSON document of an error response (``None`` fields are left out)."""
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    error.update({k: v for k, v in (fields or {}).items() if v is not None})
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    request_id: str | None = None,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """Build the JSON error response; ``retry_after`` becomes a ``Retry-After`` header."""
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(
        error_body(code, message, request_id, fields),
        status_code=status_code,
        headers=all_headers,
    )


def _validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    # Only location, message and type: echoing ``input`` could send a whole upload back.
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in errors
    ]


def _map_library_error(exc: Exception) -> tuple[int, str, dict[str, Any]]:
    """Return ``(status, code, fields)`` for stylenet / model_store / validation errors."""
    ms = model_store
    if isinstance(exc, ms.ChecksumMismatch):
        return 500, "weights_checksum_mismatch", {"style_id": exc.style_id, "version": exc.version}
    if isinstance(exc, ms.CorruptRecord):
        return 500, "style_corrupt", {"style_id": exc.style_id}
    if isinstance(exc, ms.StyleNotFound):
        return 404, "style_not_found", {"style_id": exc.style_id}
    if isinstance(exc, ms.InvalidStyleId):
        # An id that cannot be valid names no style.
        return 404, "style_not_found", {"style_id": str(exc.style_id)[:100]}
    if isinstance(exc, ms.VersionNotFound):
        return 404, "version_not_found", {"style_id": exc.style_id, "version": exc.version}
    if isinstance(exc, ms.PreviewNotFound):
        return 404, "preview_not_found", {"style_id": exc.style_id}
    if isinstance(exc, ms.InvalidCursor):
        return 422, "invalid_cursor", {}
    if isinstance(exc, ms.InvalidTransition):
        return 409, "invalid_transition", {"style_id": exc.style_id, "status": str(exc.current)}
    if isinstance(exc, ms.StyleExists):
        return 409, "style_exists", {"style_id": exc.style_id}
    if isinstance(exc, ms.HasDependents):  # a delete that would strand stored deltas
        return 409, "has_dependents", {"style_id": exc.style_id, "dependents": exc.dependents}
    if isinstance(exc, ms.Conflict | ms.BackendError):
        return 503, "store_unavailable", {}
    if isinstance(exc, StylesIncompatible):  # a blend of styles that share no base
        return 422, "styles_incompatible", {"styles": exc.styles, "reason": exc.reason}
    if isinstance(exc, BlendSpecError):
        return 422, "invalid_option", {"field": exc.field}
    if isinstance(exc, stylenet.InvalidParams):
        return 422, "invalid_params", {"field": exc.field}
    if isinstance(exc, VideoTooLarge):
        fields = {"field": exc.field, "limit": exc.limit, "actual": exc.actual}
        return 413, "clip_too_large", fields
    if isinstance(exc, UnsupportedVideo):
        return 415, "unsupported_clip", {}
    if isinstance(exc, VideoError):  # before ImageError, which it is
        return 400, "invalid_clip", {}
    if isinstance(exc, stylenet.ImageError):
        return 400, "invalid_image", {}
    if isinstance(exc, stylenet.ModelFileError):
        return 500, "model_file_invalid", {}
    if isinstance(exc, stylenet.ExportUnsupported):
        return 422, "export_unsupported", {}
    return 500, "internal_error", {}


def _request_id(request: Request) -> str | None:
    return request.scope.get("stylize.request_id")


def service_error_response(exc: ServiceError, request_id: str | None) -> JSONResponse:
    """Return the response of ``exc`` (also for ASGI middleware, outside the handlers)."""
    if exc.status in (500, 504):
        log.warning("request %s: %s %s", request_id, exc.code, exc.message)
    headers = dict(exc.headers)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(
        exc.status,
        exc.code,
        exc.message,
        request_id=request_id,
        retry_after=exc.retry_after,
        headers=headers,
        fields=exc.fields,
    )


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return service_error_response(exc, _request_id(request))


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    status, code, fields = _map_library_error(exc)
    rid = _request_id(request)
    if status >= 500:
        # Named in the log with the request id, so an operator can find the bad style.
        log.error("request %s: %s: %s", rid, code, exc)
    retry_after = 5.0 if status == 503 else None
    return error_response(
        status, code, str(exc), request_id=rid, retry_after=retry_after, fields=fields
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    details = _validation_details(list(exc.errors()))
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body", "query", "path"))
    return error_response(
        422,
        "invalid_request",
        f"{where}: {first['msg']}" if where else str(first["msg"]),
        request_id=_request_id(request),
        fields={"details": details},
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> str:
    """Return the methods of every route on the request's path (Starlette names one route's)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return error_response(
        exc.status_code,
        code,
        str(exc.detail),
        request_id=_request_id(request),
        headers=headers,
        fields={"limit": exc.limit} if isinstance(exc, PayloadTooLarge) else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on ``app`` (unexpected errors: see the middleware)."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(model_store.ModelStoreError, _library_error)
    app.add_exception_handler(stylenet.StylenetError, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
