"""Fixtures of the service tests: a store with real published styles, apps on it.

Each test module gets its own store (publishing the tiny generator takes milliseconds)
and a module-scoped ``TestClient`` so the lifespan (store, Redis, runtime) runs once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from PIL import Image
from service_testing import TEST_HOSTS, build_store, image_bytes, wait_ready

from service import ServiceSettings, create_app

with warnings.catch_warnings():
    # Starlette's notice that its TestClient will move to httpx2: not actionable here.
    warnings.filterwarnings("ignore", message=".*httpx2", category=UserWarning)
    from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def style_png(style_image: Image.Image) -> bytes:
    return image_bytes(style_image, "PNG")


@pytest.fixture(scope="session")
def photo_jpeg(photo: Image.Image) -> bytes:
    return image_bytes(photo, "JPEG", quality=90)


@pytest.fixture(scope="module")
def store_url(
    tmp_path_factory: pytest.TempPathFactory, tiny_generator_bytes: bytes, style_png: bytes
) -> str:
    return build_store(tmp_path_factory.mktemp("store"), tiny_generator_bytes, style_png)


@pytest.fixture(scope="module")
def make_settings(store_url: str, redis_url: str) -> Callable[..., ServiceSettings]:
    """Settings for a test app; keyword arguments override the defaults below."""

    def make(**overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "model_store": store_url,
            "redis_url": redis_url,
            "device": "cpu",
            "warm_styles": [],
            "batch_timeout_ms": 1.0,
            "style_cache_ttl_s": 0.0,
            "events_poll_s": 0.05,
            "allowed_hosts": TEST_HOSTS,
        }
        values.update(overrides)
        return ServiceSettings(**values)

    return make


@pytest.fixture(scope="module")
def make_client(
    make_settings: Callable[..., ServiceSettings],
) -> Callable[..., AbstractContextManager[TestClient]]:
    """``with make_client(**settings) as client:`` — a started, ready app."""

    @contextmanager
    def make(**overrides: Any) -> Iterator[TestClient]:
        app = create_app(make_settings(**overrides))
        with TestClient(app, raise_server_exceptions=False) as client:
            wait_ready(client)
            yield client

    return make


@pytest.fixture(scope="module")
def client(make_client: Callable[..., AbstractContextManager[TestClient]]) -> Iterator[TestClient]:
    with make_client() as c:
        yield c


@pytest.fixture(scope="module")
def photo_128(photo: Image.Image) -> bytes:
    """The photo as a 128×96 JPEG (the budget and admission tests' request)."""
    return image_bytes(photo.resize((128, 96)), "JPEG")
