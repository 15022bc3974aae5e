"""Pure ASGI middleware: request context (id, arrival, metrics, last 500) and body limit.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that streaming bodies and responses
pass through untouched and the body limit can act inside ``receive``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTimeout, PayloadTooLarge, error_response
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: Keys this module puts in the ASGI scope.
REQUEST_ID = "stylize.request_id"
ARRIVAL = "stylize.arrival"


class RequestContextMiddleware:
    """Assigns a request id (``X-Request-ID``), stamps the arrival time, counts requests.

    It is also the last resort for unexpected exceptions: the traceback is logged with
    the request id and the client gets a JSON 500 naming that id. (Starlette's own 500
    handler would re-raise after responding.)
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        """Wrap ``app``; requests are counted in ``metrics``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrival = time.monotonic()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex
        scope[REQUEST_ID] = request_id
        scope[ARRIVAL] = arrival
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s (%s %s) failed", request_id, scope["method"], scope["path"])
            if status is not None:
                raise  # the response has started; only closing the connection is left
            response = error_response(
                500,
                "internal_error",
                "internal server error; the request id is logged with the details",
                request_id=request_id,
            )
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")  # templates only: bounded labels
            self.metrics.requests.labels(route=name, code=str(status or 500)).inc()
            self.metrics.request_duration.labels(route=name).observe(time.monotonic() - arrival)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` (413) and slow or stalled ones (408).

    A ``Content-Length`` over the limit is answered before a byte of the body is read;
    without one (chunked) or with a lying one, bytes are counted as they arrive and the
    request fails with :class:`~service.errors.PayloadTooLarge` once past the limit.
    While the body is incomplete, each read waits at most ``idle_timeout_s`` and the
    whole body at most ``total_timeout_s`` from the first read; past either the request
    fails with :class:`~service.errors.BodyTimeout` (408, connection closed). Reads after
    the body is complete (waiting for a disconnect) are never timed.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        idle_timeout_s: float = 5.0,
        total_timeout_s: float = 120.0,
    ) -> None:
        """Wrap ``app`` with a body limit of ``max_bytes`` and the two body timeouts."""
        self.app = app
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.total_timeout_s = total_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the server rejects malformed framing itself
            if too_large:
                response = error_response(
                    413,
                    "payload_too_large",
                    f"request body is larger than the limit of {self.max_bytes} bytes",
                    request_id=scope.get(REQUEST_ID),
                    fields={"limit": self.max_bytes},
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        received = 0
        complete = False
        deadline: float | None = None

        async def counting_receive() -> Message:
            nonlocal received, complete, deadline
            if complete:
                return await receive()
            now = time.monotonic()
            deadline = deadline or now + self.total_timeout_s
            wait = min(self.idle_timeout_s, deadline - now)
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    message = await receive()
            except TimeoutError:
                stalled = wait >= self.idle_timeout_s
                raise BodyTimeout(
                    f"the request body stalled for {self.idle_timeout_s:g} s"
                    if stalled
                    else f"the request body did not arrive within {self.total_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, counting_receive, send)
