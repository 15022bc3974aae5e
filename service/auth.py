"""Bearer API keys: ``Authorization: Bearer <key>`` checked against ``api_keys``.

No keys configured: everything is open. With keys: creating, training, canceling and
deleting styles need one; stylizing needs one when ``stylize_requires_key`` is set. A
missing key is 401 (with ``WWW-Authenticate: Bearer``), a wrong one 403.

The key is checked from the headers alone, before a byte of the body is read: FastAPI
reads form and JSON bodies *before* it runs a route's dependencies, so routes that
declare a key guard use :class:`KeyFirstRoute`, which runs the guard first. A refused
request that came with a body is answered with ``Connection: close``, so its sender
cannot keep the connection busy with the rest of the body.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Forbidden, ServiceError, Unauthorized
from service.settings import ServiceSettings

#: Declares the scheme in OpenAPI; ``auto_error=False`` so our JSON errors are used.
bearer_scheme = HTTPBearer(auto_error=False, description="An API key from STYLIZE_API_KEYS")


def check_key(settings: ServiceSettings, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raise unless ``credentials`` carry a configured key (no-op when auth is off).

    Raises:
        Unauthorized: no bearer key was sent.
        Forbidden: the key is not a configured one.
    """
    if not settings.auth_enabled:
        return
    if credentials is None or not credentials.credentials:
        raise Unauthorized("this operation needs an API key: Authorization: Bearer <key>")
    offered = credentials.credentials.encode()
    # Compare against every key, in constant time per key, without early exit.
    matches = [
        hmac.compare_digest(offered, k.get_secret_value().encode()) for k in settings.api_keys
    ]
    if not any(matches):
        raise Forbidden("the API key is not valid")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def require_key(request: Request, credentials: Credentials) -> None:
    """Dependency: the request must carry a valid key when auth is enabled."""
    check_key(request.app.state.settings, credentials)


async def require_stylize_key(request: Request, credentials: Credentials) -> None:
    """Dependency: like :func:`require_key`, only when ``stylize_requires_key`` is set."""
    settings: ServiceSettings = request.app.state.settings
    if settings.stylize_requires_key:
        check_key(settings, credentials)


Guard = Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[None]]
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
