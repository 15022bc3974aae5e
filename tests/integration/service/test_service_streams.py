"""Event stream slots (issue 24, item 1): per client in Redis, shared by every process; per
process in memory; leases that a dead process stops holding.

Two :class:`StreamLimiter` instances on the session's real Redis stand for two HTTP
processes; ``tests/e2e/test_stream_limits.py`` drives the same limits through real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis as AsyncRedis
from redis_server import free_port

from service.async_redis import close_within
from service.errors import TooManyStreams, Unavailable
from service.metrics import ServiceMetrics
from service.streams import PREFIX, StreamLimiter


def _client() -> str:
    return f"addr:test-{uuid.uuid4().hex[:8]}"


def _limiter(redis_url: str | None, **options: float) -> StreamLimiter:
    redis = None if redis_url is None else AsyncRedis.from_url(redis_url, socket_timeout=0.5)
    options = {"per_client": 2, "per_process": 100} | options
    return StreamLimiter(redis, metrics=ServiceMetrics(), **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _holding(limiter: StreamLimiter, client: str, count: int) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(limiter.slot(client))
        yield


async def _refused(limiter: StreamLimiter, client: str) -> BaseException | None:
    try:
        async with limiter.slot(client):
            return None
    except (TooManyStreams, Unavailable) as exc:
        return exc


def test_a_clients_limit_holds_across_processes(redis_url: str):
    async def scenario() -> None:
        one, two = _limiter(redis_url), _limiter(redis_url)
        client = _client()
        async with one.slot(client), two.slot(client):
            for process in (one, two):
                refusal = await _refused(process, client)
                assert isinstance(refusal, TooManyStreams)
                assert refusal.retry_after and refusal.fields["limit"] == 2
            assert await _refused(one, _client()) is None  # another client is not held up
        assert await _refused(two, client) is None  # both given back
        redis = AsyncRedis.from_url(redis_url)
        assert await redis.zcard(f"{PREFIX}:{client}") == 0
        await close_within(redis, "the test's client")  # aclose() alone once hung here
        await one.close()
        await two.close()

    asyncio.run(scenario())


def test_a_process_holds_at_most_its_share_whoever_asks(redis_url: str):
    async def scenario() -> None:
        limiter = _limiter(redis_url, per_process=2)
        async with limiter.slot(_client()), limiter.slot(_client()):
            refusal = await _refused(limiter, _client())
            assert isinstance(refusal, Unavailable) and refusal.code == "streams_full"
            assert refusal.retry_after
            assert limiter.open == 2
        assert limiter.open == 0
        await limiter.close()

    asyncio.run(scenario())


def test_the_leases_of_a_dead_process_expire(redis_url: str):
    async def scenario() -> None:
        dead, alive = _limiter(redis_url, lease_s=1.0), _limiter(redis_url)
        client = _client()
        # Taken and never given back, never renewed: a process killed while streaming
        # (the slots are kept referenced: a collected one would give itself back).
        held = [dead.slot(client) for _ in range(2)]
        for slot in held:
            await slot.__aenter__()
        assert isinstance(await _refused(alive, client), TooManyStreams)
        deadline = time.monotonic() + 30  # a hang guard; the lease is 1 s
        while await _refused(alive, client) is not None:
            assert time.monotonic() < deadline, "the dead process's leases never expired"
            await asyncio.sleep(0.1)
        await alive.close()

    asyncio.run(scenario())


def test_a_live_process_renews_its_leases_and_puts_back_lost_ones(redis_url: str):
    async def scenario() -> None:
        holder, other = _limiter(redis_url, lease_s=0.6), _limiter(redis_url)
        holder.start()
        client = _client()
        redis = AsyncRedis.from_url(redis_url)
        async with _holding(holder, client, 2):
            await asyncio.sleep(2.0)  # over three leases long: renewed meanwhile
            assert isinstance(await _refused(other, client), TooManyStreams)
            await redis.delete(f"{PREFIX}:{client}")  # Redis lost them (restart, FLUSHALL)
            await holder.renew()
            assert await redis.zcard(f"{PREFIX}:{client}") == 2
        assert await redis.zcard(f"{PREFIX}:{client}") == 0
        await close_within(redis, "the test's client")  # aclose() alone once hung here
        await holder.close()
        await other.close()

    asyncio.run(scenario())


def test_without_redis_each_process_counts_its_own(redis_url: str):
    async def scenario() -> None:
        limiter = _limiter(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
        client = _client()
        async with _holding(limiter, client, 2):
            assert isinstance(await _refused(limiter, client), TooManyStreams)
            assert await _refused(limiter, _client()) is None
        assert await _refused(limiter, client) is None
        await limiter.close()

    asyncio.run(scenario())


def test_a_canceled_stream_gives_its_slot_back(redis_url: str):
    async def scenario() -> None:
        limiter, client = _limiter(redis_url, per_client=1), _client()
        entered = asyncio.Event()

        async def stream() -> None:
            async with limiter.slot(client):
                entered.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(stream())
        await entered.wait()
        assert isinstance(await _refused(limiter, client), TooManyStreams)
        task.cancel()  # the client went away, or the server stops
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.open == 0
        assert await _refused(limiter, client) is None
        await limiter.close()

    asyncio.run(scenario())
