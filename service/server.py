"""The HTTP server at the edge: uvicorn with limits on what arrives before the app sees it.

uvicorn's httptools protocol takes request lines and headers of any size and count (a
64 MiB header was answered 200; 100,000 headers were accepted), gives a new connection
unlimited time to send its headers (the keep-alive timer only starts after a first
response), and answers a malformed request with a plain-text 400. :class:`EdgeProtocol`
adds, per connection:

* the request target over ``max_url_bytes`` → 414;
* header fields over ``max_headers`` in number or ``max_header_bytes`` in size → 431,
  answered when the limit is crossed, without reading further;
* request line and headers not complete ``header_timeout_s`` after the connection
  opened (or after the first byte of a keep-alive request) → 408;
* more than ``limit_concurrency`` connections or requests at once → 503 (uvicorn's rule),
  except for the health checks (:data:`ALWAYS_ANSWERED`): an orchestrator that sees them
  fail restarts or unlists a process that is only busy, which makes an overload worse;
* every answer given here is the API's JSON error document, with ``Connection: close``
  (and ``Retry-After`` on 503).

Slow bodies are the app's business (:class:`service.middleware.BodyLimitMiddleware`),
since only the app knows when it waits for one. Build the server with
:func:`uvicorn_config`; ``python -m service`` does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from http import HTTPStatus
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import HTTP_CODES, error_body
from service.settings import ServiceSettings, load_settings

log = logging.getLogger(__name__)

#: Paths answered however many connections are open: cheap, and what orchestrators probe.
ALWAYS_ANSWERED = frozenset({b"/healthz", b"/readyz"})


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; carries the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with URL, header and header-time limits.

    Limits come from :attr:`settings` (a subclass per server sets it, see
    :func:`protocol_for`).
    """

    settings: ClassVar[ServiceSettings]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Set up uvicorn's state and the per-request counters."""
        super().__init__(*args, **kwargs)
        self._refused: _Refused | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._url_bytes = self._header_bytes = self._header_count = self._head_bytes = 0

    # Connection life
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header clock as soon as the connection exists."""
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the header clock."""
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(
            self.settings.header_timeout_s, self._headers_too_slow
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        limit = self.settings.header_timeout_s
        self._answer(408, f"the request line and headers did not arrive within {limit:g} s")

    # Parser callbacks
    def on_message_begin(self) -> None:
        """Reset the counters of a new request; a keep-alive request gets a fresh clock."""
        super().on_message_begin()
        self._url_bytes = self._header_bytes = self._header_count = self._head_bytes = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        """Count the request target; refuse it past ``max_url_bytes``."""
        self._url_bytes += len(url)
        if self._url_bytes > self.settings.max_url_bytes:
            raise self._refuse(414, f"the URL is longer than {self.settings.max_url_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count header fields and their bytes; refuse past the limits."""
        # httptools hands over each complete field once, so a field larger than the
        # limit is refused when it completes: the parser buffers at most what the
        # socket delivered so far, which the count below bounds for the next field.
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        s = self.settings
        if self._header_count > s.max_headers:
            raise self._refuse(431, f"more than {s.max_headers} header fields")
        if self._header_bytes > s.max_header_bytes:
            raise self._refuse(431, f"the header fields exceed {s.max_header_bytes} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Stop the header clock and hand the request to the app (the headers are in)."""
        self._disarm_header_timer()
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            if self.url.partition(b"?")[0] not in ALWAYS_ANSWERED:
                # uvicorn's own check (same rule) would answer in plain text.
                raise self._refuse(503, f"more than {limit} connections or requests at once")
            # A health check: past uvicorn's check too, which reads the limit from here.
            self.limit_concurrency = None
            try:
                super().on_headers_complete()
            finally:
                self.limit_concurrency = limit
            return
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; refuse a header block still unfinished past the limits.

        httptools calls back only once a header field is complete, so one endless field
        would be buffered without bound; counting raw bytes while the headers are
        incomplete bounds it to the limit plus one read.
        """
        super().data_received(data)
        if self._header_timer is None or self.transport.is_closing():
            return  # headers complete (what follows is body), or already answered
        self._head_bytes += len(data)
        s = self.settings
        if self._head_bytes > s.max_header_bytes + s.max_url_bytes + 1024:
            self._answer(431, f"the header fields exceed {s.max_header_bytes} bytes")

    def _refuse(self, status: int, message: str) -> _Refused:
        self._refused = _Refused(status, message)
        return self._refused

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused (ours or httptools') with the JSON error."""
        refused, self._refused = self._refused, None
        if refused is not None:
            self._answer(refused.status, refused.message)
        else:
            self._answer(400, f"malformed HTTP request: {msg}")

    def _answer(self, status: int, message: str) -> None:
        """Write a JSON error response and close the connection."""
        self._disarm_header_timer()
        log.info("refused at the edge: %s %s (%s)", status, message, self.client)
        body = json.dumps(error_body(HTTP_CODES.get(status, f"http_{status}"), message, None))
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            "x-content-type-options: nosniff",
        ]
        if status == 503:
            head.append("retry-after: 1")
        head += [f"{n.decode()}: {v.decode()}" for n, v in self.server_state.default_headers]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n" + body).encode("latin-1"))
        self.transport.close()


def protocol_for(settings: ServiceSettings) -> type[EdgeProtocol]:
    """Return an :class:`EdgeProtocol` subclass bound to ``settings``'s limits."""
    return type("BoundEdgeProtocol", (EdgeProtocol,), {"settings": settings})


@functools.cache
def _environment_settings() -> ServiceSettings:
    return load_settings()


class _FromEnvironment:
    """A class attribute read from ``STYLIZE_*`` the first time it is used."""

    def __get__(self, obj: object, owner: type) -> ServiceSettings:
        return _environment_settings()


class EnvironmentEdgeProtocol(EdgeProtocol):
    """:class:`EdgeProtocol` with the limits of the process's environment.

    For the processes of a ``STYLIZE_WORKERS`` > 1 server: uvicorn starts them with
    ``spawn`` and imports the protocol by name (``service.server:EnvironmentEdgeProtocol``),
    so a class made at run time by :func:`protocol_for` cannot travel to them.
    """

    settings = _FromEnvironment()  # type: ignore[assignment]


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """Return the service's uvicorn options: edge limits, keep-alive, graceful stop."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": protocol_for(settings),
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.limit_concurrency,
        # Open event streams must not hold a stop (or a restart by `stylize up`) forever.
        "timeout_graceful_shutdown": 10,
        "log_level": "info",
    }


def uvicorn_config(app: Any, settings: ServiceSettings, **overrides: Any) -> uvicorn.Config:
    """Return the configuration of a one-process server (concurrency comes from batching)."""
    return uvicorn.Config(app, **{**uvicorn_options(settings), "workers": 1, **overrides})
