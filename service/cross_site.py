"""Cross-site protection and CORS for every route, as pure ASGI middleware.

Keys are bearer headers and there are no cookies, so a browser has no credential to lend
another site; but an open service (no keys: ``make run``'s default) needs none, and a page
on any site a user visited could cancel their styles and start hour-long trainings on
their machine with a ``no-cors`` fetch or a ``<form>`` (issue 24). A browser says where a
request comes from (``Origin`` on every POST, PUT, PATCH and DELETE; ``Sec-Fetch-Site`` in
current browsers), so a state change is decided from those:

=============================================================  ===========================
what the request carries                                       answer
=============================================================  ===========================
neither ``Origin`` nor ``Sec-Fetch-Site`` (curl, the CLI,       allowed
another server)
``Sec-Fetch-Site: same-origin`` or ``none``, or an ``Origin``   allowed
equal to the service's own (its ``Host``)
an ``Origin`` in ``STYLIZE_ALLOWED_ORIGINS``, on a request the  allowed, with CORS headers
browser must have preflighted (see :func:`preflighted`)
an ``Origin`` in ``STYLIZE_ALLOWED_ORIGINS`` on a "simple"      403 ``cross_site``
request (a form, a ``no-cors`` fetch: sent without asking)
any other ``Origin`` (``null`` too), or no ``Origin`` with      403 ``cross_site``
``Sec-Fetch-Site: cross-site`` / ``same-site``
=============================================================  ===========================

The refusal comes before the app runs, so nothing of the body is read and nothing changes.
Why a configured origin still needs a preflighted request: a simple request is sent
without asking the service first, so a ``<form>`` injected into that site's pages (HTML,
no script) could still drive the service; a preflighted one can only be sent by script
the site runs, within the methods and headers the preflight allowed.

CORS: a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from a configured
origin is answered 204 with the methods and headers the API takes; from any other origin,
403 ``cross_site``. Answers to a configured origin carry ``Access-Control-Allow-Origin``
(that origin, never ``*``; no credentials) and expose the API's headers; with origins
configured every answer carries ``Vary: Origin``, since its headers depend on it. Safe
methods (GET, HEAD) from other origins are served as before, without CORS headers, so
their pages cannot read the answers.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import CrossSite, service_error_response
from service.middleware import REQUEST_ID
from service.settings import normalize_origin

#: Methods that change state: each must pass the checks above.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, X-Requested-With, X-Request-ID, Last-Event-ID"
EXPOSE_HEADERS = (
    "Location, Retry-After, X-Request-ID, X-Style-Id, X-Style-Version, X-Batch-Size, "
    "X-Image-Size, Server-Timing, Content-Disposition"
)
PREFLIGHT_MAX_AGE_S = 600
#: Content types a page may send without a preflight (the CORS-safelisted ones).
SIMPLE_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
#: Headers a page can only add in a request the browser preflights.
PREFLIGHTED_HEADERS = ("authorization", "x-requested-with", "x-request-id")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
HOW_TO_ALLOW = (
    "to let a page on another origin change state here, add its origin to "
    "STYLIZE_ALLOWED_ORIGINS (e.g. https://app.example.com) and send its requests with "
    "fetch() and an Authorization or X-Requested-With header"
)


def preflighted(method: str, headers: Headers) -> bool:
    """Whether a browser must have preflighted this request had it come cross-origin.

    PUT, PATCH and DELETE always are; a POST is when it carries a header a page can only
    set in CORS mode, or a body that is not form data or text.
    """
    if method != "POST":
        return True
    if any(name in headers for name in PREFLIGHTED_HEADERS):
        return True
    content_type = headers.get("content-type")
    essence = content_type.split(";")[0].strip().lower() if content_type else None
    return essence is not None and essence not in SIMPLE_TYPES


def _host_port(host: str, scheme: str) -> tuple[str, str]:
    """``(host, port)`` of a ``Host`` header, the port defaulting to ``scheme``'s."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    if not sep or name.endswith(":") or (host.startswith("[") and not name.endswith("]")):
        return host, _DEFAULT_PORTS.get(scheme, "")  # no port (or a bare IPv6 address)
    return name, port


def is_own_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` (normalized) names the host and port the request was sent to.

    The scheme is left out: behind a proxy that ends TLS the service sees ``http`` while
    the page is ``https``; nobody else serves pages from this host and port.
    """
    if not host:
        return False
    scheme, _, rest = origin.partition("://")
    return _host_port(rest, scheme) == _host_port(host, scheme)


class CrossSiteMiddleware:
    """Refuses cross-site state changes (403 ``cross_site``); answers CORS for ``allowed``.

    See the module doc for the rules. Put it inside :class:`RequestContextMiddleware`, so
    refusals carry a request id and are counted.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        """Wrap ``app``; ``allowed_origins``: normalized origins (settings validate them)."""
        self.app = app
        self.allowed = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope["method"]
        origin = self._origin(headers.get("origin"))
        if method == "OPTIONS" and "access-control-request-method" in headers and origin:
            await self._preflight(scope, receive, send, origin, headers)
            return
        if method in STATE_CHANGING:
            refusal = self._refusal(method, headers, origin)
            if refusal is not None:
                await self._refuse(scope, receive, send, refusal, headers)
                return
        if not self.allowed:  # no answer depends on the Origin
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, self._with_cors(send, origin))

    @staticmethod
    def _origin(value: str | None) -> str | None:
        """Return the normalized ``Origin``; ``"null"`` or a malformed one as sent."""
        if value is None:
            return None
        try:
            return normalize_origin(value)
        except ValueError:
            return value  # never allowed, never own: refused below where it matters

    def _refusal(self, method: str, headers: Headers, origin: str | None) -> CrossSite | None:
        site = headers.get("sec-fetch-site")
        if origin is None:
            if site in (None, "same-origin", "none"):
                return None
            return CrossSite(
                f"this {method} came from another site's page (Sec-Fetch-Site: {site}) "
                f"without an Origin to check; {HOW_TO_ALLOW}",
            )
        if site == "same-origin" or is_own_origin(origin, headers.get("host")):
            return None
        if origin not in self.allowed:
            return CrossSite(
                f"this {method} came from a page on {origin}, which may not change anything "
                f"here; {HOW_TO_ALLOW}",
                origin=origin,
            )
        if not preflighted(method, headers):
            return CrossSite(
                f"{origin} is allowed, but a state change from it must be a request the "
                "browser preflights (fetch() with an Authorization or X-Requested-With "
                "header, or a JSON body), never a form or a no-cors request",
                origin=origin,
            )
        return None

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, origin: str, headers: Headers
    ) -> None:
        own = headers.get("sec-fetch-site") == "same-origin" or is_own_origin(
            origin, headers.get("host")
        )
        if origin not in self.allowed and not own:
            refusal = CrossSite(
                f"a page on {origin} may not call this API; {HOW_TO_ALLOW}", origin=origin
            )
            await self._refuse(scope, receive, send, refusal, headers)
            return
        response = Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
                "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            },
        )
        await response(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, refusal: CrossSite, headers: Headers
    ) -> None:
        if headers.get("transfer-encoding") or headers.get("content-length", "0") != "0":
            # The body is never read: its sender must not keep the connection busy with it.
            refusal.headers["Connection"] = "close"
        if self.allowed:
            refusal.headers["Vary"] = "Origin"
        response = service_error_response(refusal, scope.get(REQUEST_ID))
        await response(scope, receive, send)

    def _with_cors(self, send: Send, origin: str | None) -> Send:
        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.add_vary_header("Origin")
                if origin in self.allowed:
                    headers["Access-Control-Allow-Origin"] = origin
                    headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            await send(message)

        return send_with_cors


__all__ = ["CrossSiteMiddleware", "is_own_origin", "preflighted"]
