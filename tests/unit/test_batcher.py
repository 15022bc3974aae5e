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


# --- fairness between clients (issue 23): order of service, never timings ----------------


class Gated:
    """A runner that records each batch's payloads and holds the first batch at a gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[str]] = []

    async def __call__(self, _key, payloads: Sequence[str]) -> list[str]:
        if not self.batches:
            self.batches.append(list(payloads))
            await self.gate.wait()
        else:
            self.batches.append(list(payloads))
        return list(payloads)


async def _flood_then_light(
    runner: Gated, batcher: Batcher, heavy: int, light: int, key_of=lambda _name: "k"
) -> list[asyncio.Future]:
    """``heavy`` requests of one client, the first on the device, then ``light`` of another."""
    far = time.monotonic() + 60
    futures = [asyncio.ensure_future(batcher.submit(key_of("h0"), "h0", far, client="heavy"))]
    await _until_dispatched(batcher, 1)  # h0 holds the device; the rest queue behind it
    for i in range(1, heavy):
        name = f"h{i}"
        futures.append(
            asyncio.ensure_future(batcher.submit(key_of(name), name, far, client="heavy"))
        )
    await asyncio.sleep(0)  # heavy's requests are queued before light's
    for i in range(light):
        name = f"l{i}"
        futures.append(
            asyncio.ensure_future(batcher.submit(key_of(name), name, far, client="light"))
        )
    await asyncio.sleep(0.01)
    return futures


def _serve(
    max_batch_size: int, heavy: int, light: int, key_of=lambda _name: "k"
) -> tuple[list[list[str]], list[str]]:
    """Run :func:`_flood_then_light` to the end; return the batches and every result."""

    async def scenario() -> tuple[list[list[str]], list[str]]:
        runner = Gated()
        batcher = _batcher(runner, max_batch_size=max_batch_size, queue_size=32)
        batcher.start()
        futures = await _flood_then_light(runner, batcher, heavy, light, key_of)
        runner.gate.set()
        results = await asyncio.gather(*futures)
        await batcher.stop()
        return runner.batches, [r.value for r in results]

    return asyncio.run(scenario())


def test_a_flood_from_one_client_does_not_starve_another() -> None:
    """One at a time (CPU): the light client is served next, then turns alternate."""
    batches, _ = _serve(max_batch_size=1, heavy=8, light=2)
    # Oldest-first would serve h0..h7 before l0: the light client waited for all of it.
    assert [b[0] for b in batches] == ["h0", "l0", "h1", "l1", "h2", "h3", "h4", "h5", "h6", "h7"]


def test_batches_are_filled_round_robin_across_clients() -> None:
    batches, results = _serve(max_batch_size=4, heavy=7, light=2)
    assert batches == [["h0"], ["l0", "h1", "l1", "h2"], ["h3", "h4", "h5", "h6"]]
    assert results == [f"h{i}" for i in range(7)] + ["l0", "l1"]  # each got its own


def test_the_light_client_goes_first_across_shapes_too() -> None:
    """Requests of different shapes never share a batch; turns still alternate."""
    batches, _ = _serve(
        max_batch_size=4, heavy=9, light=1, key_of=lambda n: "small" if n[0] == "h" else "large"
    )
    assert batches == [["h0"], ["l0"], ["h1", "h2", "h3", "h4"], ["h5", "h6", "h7", "h8"]]


def test_a_full_queue_makes_room_for_a_client_holding_less_of_it() -> None:
    async def scenario() -> None:
        runner = Gated()
        batcher = _batcher(runner, max_batch_size=1, queue_size=4)
        batcher.start()
        far = time.monotonic() + 60
        futures = await _flood_then_light(runner, batcher, heavy=5, light=0)  # h1..h4 queued
        assert batcher.full
        lights = [asyncio.ensure_future(batcher.submit("k", "l0", far, client="light"))]
        await asyncio.sleep(0.01)
        # The heavy client's newest request made room: 429 fair_share, at once.
        with pytest.raises(Overloaded) as pushed:
            await futures[4]
        assert pushed.value.code == "fair_share" and pushed.value.retry_after >= 1
        lights.append(asyncio.ensure_future(batcher.submit("k", "l1", far, client="light")))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await futures[3]
        # Two each now: the next light request would not be fairer; refused itself.
        with pytest.raises(Overloaded) as refused:
            batcher.check_capacity("light")
        assert refused.value.code == "overloaded"
        with pytest.raises(Overloaded):
            await batcher.submit("k", "l2", far, client="light")
        assert batcher.depth == 4
        runner.gate.set()
        served = await asyncio.gather(*futures[:3], *lights)
        await batcher.stop()
        assert [r.value for r in served] == ["h0", "h1", "h2", "l0", "l1"]
        assert [b[0] for b in runner.batches] == ["h0", "l0", "h1", "l1", "h2"]

    asyncio.run(scenario())
