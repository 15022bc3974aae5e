"""The app factory: ``create_app(settings)`` builds the FastAPI app and its lifespan.

The lifespan opens the model store, the Redis connection (for enqueueing only) and the
inference runtime, puts them on ``app.state`` (reached through :mod:`service.deps`),
and starts the warm-up in the background: ``/healthz`` answers at once, ``/readyz``
turns 200 when the runtime is warm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from model_store import open_store
from service.cross_site import CrossSiteMiddleware
from service.demo_styles import register_demo_styles
from service.errors import install_error_handlers
from service.hosts import HostCheckMiddleware
from service.limits import Limits
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.openapi import install_openapi
from service.processes import ProcessGroup
from service.routes import estimate, events, exports, health, styles, stylize, videos
from service.runtime import InferenceRuntime
from service.security_headers import SecurityHeadersMiddleware, docs_policy
from service.settings import ServiceSettings
from service.streams import StreamLimiter
from service.training import TrainingQueue

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Swagger UI's assets, shipped inside the fastapi-offline wheel.
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the stylize ASGI app.

    Args:
        settings: the configuration; default: read from ``STYLIZE_*`` variables.

    Returns:
        The app; resources are created when its lifespan starts.
    """
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics()
    group = None
    if settings.process_dir is not None:
        # Set by `python -m service` for its processes, with `workers` made explicit.
        group = ProcessGroup(settings.process_dir, settings.workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.model_store)  # fails fast on a bad URL
        if settings.demo_styles_dir is not None:
            await asyncio.to_thread(register_demo_styles, store, settings.demo_styles_dir)
        redis = Redis.from_url(
            settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        runtime = InferenceRuntime(settings, store, metrics)
        await runtime.start()
        app.state.store = store
        app.state.redis = redis
        app.state.runtime = runtime
        app.state.training = TrainingQueue(
            redis, queue_name=settings.training_queue, job_timeout_s=settings.train_job_timeout_s
        )
        app.state.limits = Limits(settings, redis)
        app.state.streams = StreamLimiter(
            # Short timeouts: asked as each stream starts; without an answer it counts locally.
            AsyncRedis.from_url(settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5),
            per_client=settings.streams_per_client,
            per_process=settings.effective_max_streams,
            metrics=metrics,
        )
        app.state.streams.start()
        warm = asyncio.create_task(runtime.warm_up(), name="stylize-warm-up")
        if group is not None:
            warm.add_done_callback(lambda task: runtime.warmed and group.mark_ready())
        log.info(
            "stylize service up: store %s, device %s", store.backend.describe(), runtime.device
        )
        try:
            yield
        finally:
            warm.cancel()
            await asyncio.gather(warm, return_exceptions=True)
            await runtime.close()
            await app.state.limits.close()
            await app.state.streams.close()
            redis.close()
            if group is not None:
                group.leave()

    app = FastAPI(
        title="stylize",
        version="0.1.0",
        summary="Fast neural style transfer (instance-normalized feed-forward generators)",
        lifespan=lifespan,
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN: served locally instead.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.process_group = group
    install_error_handlers(app)
    # Added last = outermost: security headers on every answer, then the request context
    # (id, metrics), the Host check (DNS rebinding) and the cross-site check before any
    # body is read, the body limit.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        idle_timeout_s=settings.body_idle_timeout_s,
        total_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(CrossSiteMiddleware, allowed_origins=settings.allowed_origins)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    for module in (stylize, styles, exports, events, health, estimate, videos):
        app.include_router(module.router)
    _mount_api_docs(app)
    _mount_web_page(app)
    install_openapi(app)
    return app


def _mount_api_docs(app: FastAPI) -> None:
    """Serve ``/docs`` (Swagger UI) with assets from a Python package.

    ``fastapi-offline`` ships Swagger UI 5 (which reads OpenAPI 3.1) as static files, so
    the docs render with no request leaving this service. No ``/redoc``: ReDoc's bundle
    loads its logo from its vendor's site whatever it is told.
    """
    assets = "/docs-assets"
    app.mount(assets, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title}: API docs",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon.png",
    )
    # Its inline start-up script is allowed by hash (service.security_headers).
    headers = {"Content-Security-Policy": docs_policy(page.body)}

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page.body, headers=headers)


def _mount_web_page(app: FastAPI) -> None:
    """Serve the web page (plain static files, no build step): ``/`` and ``/static/*``.

    Registered after the API routes, and only on ``/`` and ``/static``, so it shadows
    none of them; left out of the OpenAPI schema.
    """

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        # FileResponse of a missing file raises; an install without the page keeps the API.
        if not (STATIC_DIR / "index.html").is_file():
            raise HTTPException(404, "the web page is not installed")
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
