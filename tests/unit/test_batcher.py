"""The dynamic batcher on its own: slots, cancellation, shutdown, and no hidden costs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from service.errors import Overloaded
from service.metrics import ServiceMetrics
from service.runtime.batcher import Batcher


class Payload:
    """Stands for a request's image and model: counts how often it is formatted."""

    reprs = 0

    def __init__(self, value: int) -> None:
        self.value = value

    def __repr__(self) -> str:
        Payload.reprs += 1
        return f"Payload({self.value})"


def _batcher(runner, *, max_batch_size: int = 4, queue_size: int = 8) -> Batcher:
    return Batcher(
        runner,
        max_batch_size=max_batch_size,
        batch_timeout_s=0.005,
        queue_size=queue_size,
        metrics=ServiceMetrics(),
    )


async def _double(_key, payloads: Sequence[Payload]) -> list[int]:
    return [p.value * 2 for p in payloads]


async def _stuck(_key, payloads: Sequence[Payload]) -> list[int]:
    await asyncio.Event().wait()  # holds the device until cancelled
    return []


async def _until_dispatched(batcher: Batcher, count: int) -> None:
    while batcher.dispatched < count:
        await asyncio.sleep(0.001)


def test_answered_requests_never_format_their_payload() -> None:
    """A repr of an image and a model cost a quarter of the event loop's time per request."""

    async def scenario() -> None:
        batcher = _batcher(_double)
        batcher.start()
        Payload.reprs = 0
        results = await asyncio.gather(
            *(batcher.submit("k", Payload(i), time.monotonic() + 5) for i in range(6))
        )
        await batcher.stop()
        assert [r.value for r in results] == [0, 2, 4, 6, 8, 10]
        assert {r.batch_size for r in results} <= {1, 2, 3, 4}
        assert Payload.reprs == 0
        assert batcher.depth == 0

    asyncio.run(scenario())


def test_cancelled_while_queued_gives_the_slot_back() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def blocked(_key, payloads):
            await release.wait()
            return [p.value for p in payloads]

        batcher = _batcher(blocked, max_batch_size=1, queue_size=2)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("k", Payload(1), time.monotonic() + 5))
        await _until_dispatched(batcher, 1)  # the first holds the device
        queued = asyncio.ensure_future(batcher.submit("k", Payload(2), time.monotonic() + 5))
        await asyncio.sleep(0.01)
        assert batcher.depth == 1
        queued.cancel()
        await asyncio.gather(queued, return_exceptions=True)
        assert batcher.depth == 0
        release.set()
        assert (await first).value == 1
        await batcher.stop()

    asyncio.run(scenario())


def test_stop_fails_queued_requests_cleanly() -> None:
    async def scenario() -> None:
        batcher = _batcher(_stuck, max_batch_size=1)
        batcher.start()
        waiters = [
            asyncio.ensure_future(batcher.submit("k", Payload(i), time.monotonic() + 5))
            for i in range(3)
        ]
        await _until_dispatched(batcher, 1)
        await batcher.stop()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(o, RuntimeError) for o in outcomes), outcomes
        assert batcher.depth == 0

    asyncio.run(scenario())


def test_queue_full_is_refused_before_queueing() -> None:
    async def scenario() -> None:
        batcher = _batcher(_stuck, max_batch_size=1, queue_size=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("k", Payload(0), time.monotonic() + 5))
        await _until_dispatched(batcher, 1)
        queued = asyncio.ensure_future(batcher.submit("k", Payload(1), time.monotonic() + 5))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.submit("k", Payload(2), time.monotonic() + 5)
        assert batcher.depth == 1
        await batcher.stop()
        await asyncio.gather(running, queued, return_exceptions=True)

    asyncio.run(scenario())
