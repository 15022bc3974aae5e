"""Bearer API keys: ``Authorization: Bearer <key>``, from ``api_keys`` or ``admin_keys``.

No keys configured: everything is open. With keys: creating, training, canceling and
deleting styles need one; stylizing needs one when ``stylize_requires_key`` is set. A
missing key is 401 (with ``WWW-Authenticate: Bearer``), a wrong one 403.

Who sent a request is a :class:`Caller`: the key's :func:`key_id` (a short digest; the key
itself is never stored or logged) and whether it is an admin key. A user key manages the
styles it created (their records carry its id as ``owner``); an admin key manages all.

The key is checked from the headers alone, before a byte of the body is read: FastAPI
reads form and JSON bodies *before* it runs a route's dependencies, so routes that
declare a key guard use :class:`KeyFirstRoute`, which runs the guard first. A refused
request that came with a body is answered with ``Connection: close``, so its sender
cannot keep the connection busy with the rest of the body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Forbidden, ServiceError, Unauthorized
from service.settings import ServiceSettings

#: Declares the scheme in OpenAPI; ``auto_error=False`` so our JSON errors are used.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key from STYLIZE_API_KEYS")


def key_id(key: str) -> str:
    """Return the id of an API key: 16 hex digits of a domain-separated SHA-256.

    It names the key in style records (``owner``) and in Redis (limits) without
    revealing it: a digest of a random key of 8 or more characters cannot be reversed.
    """
    return hashlib.sha256(b"stylize-api-key\0" + key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as keys go.

    Attributes:
        key_id: :func:`key_id` of its valid key; None without one.
        admin: the key is one of ``admin_keys``.
        open: no keys are configured: anyone may do anything, and nothing is owned.
    """

    key_id: str | None = None
    admin: bool = False
    open: bool = False

    def may_manage(self, owner: str | None) -> bool:
        """Whether this caller may cancel, retrain or delete a style of ``owner``."""
        return self.open or self.admin or (owner is not None and owner == self.key_id)


OPEN = Caller(open=True)
ANONYMOUS = Caller()


def _match(settings: ServiceSettings, offered: str) -> Caller | None:
    """Return the caller of a valid key, else None (constant time per configured key)."""
    data = offered.encode()
    # Compare against every key without early exit: the time tells nothing of which.
    users = [hmac.compare_digest(data, k.get_secret_value().encode()) for k in settings.api_keys]
    admins = [hmac.compare_digest(data, k.get_secret_value().encode()) for k in settings.admin_keys]
    if any(admins):
        return Caller(key_id(offered), admin=True)
    if any(users):
        return Caller(key_id(offered))
    return None


def check_key(
    settings: ServiceSettings, credentials: HTTPAuthorizationCredentials | None
) -> Caller:
    """Return the caller of ``credentials``; raise unless they carry a configured key.

    With auth off, return :data:`OPEN` whatever was sent.

    Raises:
        Unauthorized: no bearer key was sent.
        Forbidden: the key is not a configured one.
    """
    if not settings.auth_enabled:
        return OPEN
    if credentials is None or not credentials.credentials:
        raise Unauthorized("this operation needs an API key: Authorization: Bearer <key>")
    caller = _match(settings, credentials.credentials)
    if caller is None:
        raise Forbidden("the API key is not valid")
    return caller


def check_manager(caller: Caller, owner: str | None, style_id: str, action: str) -> None:
    """Raise 403 ``not_owner`` unless ``caller`` may ``action`` (cancel, ...) the style.

    Raises:
        Forbidden: the style is another key's, or has no owner and the key is no admin's.
    """
    if caller.may_manage(owner):
        return
    if owner is None:
        whose, who = "has no owner (a demo style, or made while the API was open)", "an admin key"
    else:
        whose, who = "belongs to another API key", "its owner or an admin key"
    raise Forbidden(
        f"style {style_id!r} {whose}: only {who} may {action} it",
        code="not_owner",
        style_id=style_id,
    )


def identify(settings: ServiceSettings, authorization: str | None) -> Caller:
    """Return who an ``Authorization`` header names, never refusing the request.

    A valid bearer key's caller; anything else (no key, a wrong one, auth off):
    :data:`ANONYMOUS`, which :func:`client_id` then counts by address.
    """
    scheme, _, key = (authorization or "").partition(" ")
    if not settings.auth_enabled or scheme.lower() != "bearer" or not key.strip():
        return ANONYMOUS
    return _match(settings, key.strip()) or ANONYMOUS


def client_id(request: Request, caller: Caller) -> str:
    """Return who the request counts against: its key's id, else ``addr:<client address>``.

    The address is the peer's, or the proxy's ``X-Forwarded-For`` when uvicorn trusts the
    proxy (``FORWARDED_ALLOW_IPS``).
    """
    if caller.key_id is not None:
        return caller.key_id
    return f"addr:{request.client.host if request.client else 'unknown'}"


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def require_key(request: Request, credentials: Credentials) -> Caller:
    """Dependency: the request must carry a valid key when auth is enabled; its caller."""
    return check_key(request.app.state.settings, credentials)


async def require_stylize_key(request: Request, credentials: Credentials) -> Caller:
    """Dependency: like :func:`require_key` when ``stylize_requires_key`` is set.

    Otherwise a key is optional: a valid one identifies the caller (for its rate limit),
    a missing or unknown one makes it :data:`ANONYMOUS` (limited by its address).
    """
    settings: ServiceSettings = request.app.state.settings
    if settings.stylize_requires_key or not settings.auth_enabled:
        return check_key(settings, credentials)
    if credentials is None or not credentials.credentials:
        return ANONYMOUS
    return _match(settings, credentials.credentials) or ANONYMOUS


Guard = Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Caller]]
_GUARDS: tuple[Guard, ...] = (require_key, require_stylize_key)


class KeyFirstRoute(APIRoute):
    """An ``APIRoute`` that runs its key guard (if it declares one) before the body is read.

    The guard stays a declared dependency too, so the OpenAPI document shows the
    security scheme; running it twice costs one header lookup.
    """

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        """Wrap FastAPI's handler with the key check."""
        handler = super().get_route_handler()
        calls = {dep.call for dep in self.dependant.dependencies}
        guard = next((g for g in _GUARDS if g in calls), None)
        if guard is None:
            return handler

        async def key_first(request: Request) -> Response:
            try:
                await guard(request, await bearer_scheme(request))
            except ServiceError as exc:
                headers = request.headers
                if headers.get("transfer-encoding") or headers.get("content-length", "0") != "0":
                    exc.headers["Connection"] = "close"
                raise
            return await handler(request)

        return key_first
