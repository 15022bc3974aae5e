"""Security headers on every answer (pure ASGI middleware), and the policies they carry.

* ``X-Content-Type-Options: nosniff`` everywhere: a browser never runs a JSON error, an
  uploaded style image or a stylized result as a script or page because it looks like
  one.
* ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``: no site can frame the page
  and trick a click on Delete.
* ``Referrer-Policy: same-origin``: style ids in URLs stay here.
* ``Content-Security-Policy``: the web page and its files (``/``, ``/static/``, and the
  API docs' assets) may load only this origin's scripts, styles and connections, and
  run no inline script (the page has none; event handlers are bound in the
  ES modules under ``static/``, entry ``app.js``);
  images may also be ``blob:`` (the chosen photo and the result) and ``data:``. Every
  other answer (JSON, images) gets ``default-src 'none'``: nothing in it may run. A
  route that sets its own policy keeps it (``/docs``: :func:`docs_policy`).
* The on-device worker (``/static/ondevice-worker.js``, "Stylize on this device") runs
  onnxruntime-web's WebAssembly: its policy is the page's plus ``'wasm-unsafe-eval'``
  (compiling WebAssembly; JavaScript ``eval`` stays refused). A dedicated worker is
  governed by the policy of its own script's answer, so the page itself keeps the strict
  one and WebAssembly can run only in that worker.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PAGE_SOURCES = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    # A picked clip plays from a blob: URL beside its result (service/static/video.js).
    "media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)
PAGE_POLICY = f"{_PAGE_SOURCES}; frame-ancestors 'none'"
#: The on-device worker's script: WebAssembly may compile there (and only there).
WORKER_PATH = "/static/ondevice-worker.js"
WORKER_POLICY = PAGE_POLICY.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: Paths of the page and its files (prefixes end with a slash).
PAGE_PATHS = ("/", "/static/", "/docs-assets/")
COMMON = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def policy_for(path: str) -> str:
    """Return the Content-Security-Policy of an answer on ``path``."""
    if path == WORKER_PATH:
        return WORKER_POLICY
    if path == "/" or path.startswith(PAGE_PATHS[1:]):
        return PAGE_POLICY
    return API_POLICY


def docs_policy(html: bytes) -> str:
    """Return the policy of a page with inline scripts: the page's, plus their hashes.

    Swagger UI's page (FastAPI's HTML) starts the bundle with an inline script; it is
    allowed by its SHA-256 alone, so no other inline script could run there.
    """
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return PAGE_POLICY.replace("script-src 'self'", f"script-src 'self' {hashes}".rstrip())


class SecurityHeadersMiddleware:
    """Adds the headers above to every response that does not set them itself.

    Outermost, so that every answer of the app, its 500s included, carries them.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in (*COMMON, ("Content-Security-Policy", policy)):
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = [
    "API_POLICY",
    "PAGE_POLICY",
    "WORKER_POLICY",
    "SecurityHeadersMiddleware",
    "docs_policy",
    "policy_for",
]
