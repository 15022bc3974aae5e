"""``python -m service``: run the HTTP service with uvicorn (one process per device)."""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.server import uvicorn_config
from service.settings import load_settings


def main() -> None:
    """Serve ``create_app(load_settings())`` with the edge limits of :mod:`service.server`."""
    settings = load_settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()


if __name__ == "__main__":
    main()
