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

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from redis import Redis

from model_store import open_store
from service.demo_styles import register_demo_styles
from service.errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from service.routes import estimate, events, health, styles, stylize
from service.runtime import InferenceRuntime
from service.settings import ServiceSettings
from service.training import TrainingQueue

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the stylize ASGI app.

    Args:
        settings: the configuration; default: read from ``STYLIZE_*`` variables.

    Returns:
        The app; resources are created when its lifespan starts.
    """
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics()

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
        warm = asyncio.create_task(runtime.warm_up(), name="stylize-warm-up")
        log.info(
            "stylize service up: store %s, device %s", store.backend.describe(), runtime.device
        )
        try:
            yield
        finally:
            warm.cancel()
            await asyncio.gather(warm, return_exceptions=True)
            await runtime.close()
            redis.close()

    app = FastAPI(
        title="stylize",
        version="0.1.0",
        summary="Fast neural style transfer (instance-normalized feed-forward generators)",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    # Added last = outermost: the request context wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    for module in (stylize, styles, events, health, estimate):
        app.include_router(module.router)
    _mount_web_page(app)
    return app


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
