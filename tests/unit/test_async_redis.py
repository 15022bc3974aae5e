"""Closing the API's asyncio Redis clients is bounded (service.async_redis)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service.async_redis import close_within


def test_a_close_that_never_ends_is_abandoned_with_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # redis-py#3941: aclose() can wait forever for a connection's wait_closed(). Without the
    # bound this test hangs until pytest-timeout ends it.
    async def scenario() -> None:
        client = AsyncRedis.from_url("redis://127.0.0.1:9/0")
        never = asyncio.Event()

        async def stuck() -> None:
            await never.wait()

        client.aclose = stuck  # type: ignore[method-assign]
        await close_within(client, "the test's client", timeout_s=0.2)

    with caplog.at_level(logging.WARNING, logger="service.async_redis"):
        asyncio.run(scenario())
    assert "the test's client: Redis client not closed within 0.2 s" in caplog.text


def test_a_normal_close_closes_the_connections(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"close-test-{uuid.uuid4().hex[:8]}"

    def connected() -> int:
        with Redis.from_url(redis_url) as redis:
            return sum(client.get("name") == name for client in redis.client_list())

    async def scenario() -> int:
        client = AsyncRedis.from_url(redis_url, client_name=name)
        assert await client.ping()
        assert connected() == 1
        await close_within(client, "the test's client")
        deadline = time.monotonic() + 10  # the server notices the close a moment later
        while connected() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return connected()

    with caplog.at_level(logging.WARNING, logger="service.async_redis"):
        assert asyncio.run(scenario()) == 0  # the server saw the connection go
    assert "not closed" not in caplog.text
