"""``python -m service``: run the HTTP service with uvicorn (one process per device)."""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.settings import load_settings


def main() -> None:
    """Serve ``create_app(load_settings())`` on the configured host and port."""
    settings = load_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One worker process: the runtime owns the device; concurrency comes from batching.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        timeout_keep_alive=15,
        # Open event streams must not hold a stop (or a restart by `stylize up`) forever.
        timeout_graceful_shutdown=10,
        log_level="info",
    )


if __name__ == "__main__":
    main()
