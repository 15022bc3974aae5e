"""Bearer API keys: ``Authorization: Bearer <key>`` checked against ``api_keys``.

No keys configured: everything is open. With keys: creating, training, canceling and
deleting styles need one; stylizing needs one when ``stylize_requires_key`` is set. A
missing key is 401 (with ``WWW-Authenticate: Bearer``), a wrong one 403.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.errors import Forbidden, Unauthorized
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
