"""DNS-rebinding protection: only answer requests addressed to a host name this service has.

A page on ``http://evil.example:8000`` whose name the attacker then points at 127.0.0.1
(or at a LAN address) is, to the browser, the same origin as the service listening
there: its scripts read every answer and pass the cross-site check
(:mod:`service.cross_site`), since their ``Origin`` equals the ``Host`` they send. What
gives it away is that ``Host``: the attacker's name, never one the service is reached
by. So every request's ``Host`` must be:

* an IP address literal (``127.0.0.1:8000``, ``[::1]``, a pod's or a LAN address):
  always accepted, because a rebinding page's ``Host`` is always the attacker's *name*,
  and orchestrators' probes (Kubernetes ``httpGet`` sends the pod IP) and ``curl`` to
  an address must keep working;
* ``localhost`` or a name under it (browsers resolve ``*.localhost`` to loopback
  themselves, so no DNS answer can rebind them);
* a name in ``STYLIZE_ALLOWED_HOSTS`` (``stylize.example.com``; ``*.example.com`` for
  every name under it; ``*`` accepts any host and turns the check off).

A request without ``Host`` (HTTP/1.0, hand-made clients; no browser sends one) passes.
Anything else gets 400 ``host_not_allowed`` (the JSON error) before the app runs.
The port is never compared: the name is what a rebinding attack controls.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import HostNotAllowed, service_error_response
from service.middleware import REQUEST_ID
from service.settings import normalize_host_pattern

#: Names accepted whatever ``STYLIZE_ALLOWED_HOSTS`` says (see the module doc).
ALWAYS_ALLOWED = ("localhost", "*.localhost")


def host_name(host: str) -> str:
    """Return the name or address of a ``Host`` header value: lower case, no port, no dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rpartition(":")[0].rstrip(".") if ":" in host else host.rstrip(".")


def is_ip_literal(name: str) -> bool:
    """Whether ``name`` (from :func:`host_name`) is an IPv4 or bracketed IPv6 address."""
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return True


def matches(name: str, pattern: str) -> bool:
    """Whether host ``name`` matches an allowlist ``pattern`` (exact, ``*.suffix`` or ``*``)."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


class HostCheckMiddleware:
    """Refuses requests whose ``Host`` is not this service's (400 ``host_not_allowed``).

    See the module doc for the rules. Put it inside :class:`RequestContextMiddleware`, so
    refusals carry a request id and are counted.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        """Wrap ``app``; ``allowed_hosts``: normalized patterns (settings validate them)."""
        self.app = app
        self.patterns = (*ALWAYS_ALLOWED, *allowed_hosts)
        self.off = "*" in self.patterns

    def allows(self, host: str | None) -> bool:
        """Whether a request with this ``Host`` header value is served."""
        if host is None or self.off:
            return True
        name = host_name(host)
        return is_ip_literal(name) or any(matches(name, p) for p in self.patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or self.off:
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        refusal = HostNotAllowed(
            f"this service does not answer to the host name {host_name(host or '')!r}; if "
            "that is how it is reached, add the name to STYLIZE_ALLOWED_HOSTS "
            "(pages loaded through any other name could be another site's: DNS rebinding)",
            host=host_name(host or "")[:255],
        )
        # The body (if any) is never read: the connection must not stay busy with it.
        refusal.headers["Connection"] = "close"
        await service_error_response(refusal, scope.get(REQUEST_ID))(scope, receive, send)


__all__ = ["ALWAYS_ALLOWED", "HostCheckMiddleware", "matches", "normalize_host_pattern"]
