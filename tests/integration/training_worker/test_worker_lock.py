"""The per-style training lease, against a real Redis."""

from __future__ import annotations

import time
import uuid

import pytest
from redis import Redis

from worker import lock


@pytest.fixture
def redis(redis_url: str):
    client = Redis.from_url(redis_url)
    yield client
    client.close()


class _Clock:
    """A clock that moves only when slept on: waits counted, never measured."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


def test_one_holder_at_a_time(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    style = f"s{uuid.uuid4().hex[:8]}"
    first = lock.StyleLock(redis, style, "w1:job", ttl_s=5)
    second = lock.StyleLock(redis, style, "w2:job", ttl_s=5)
    assert first.acquire(wait_s=0)
    clock = _Clock()
    monkeypatch.setattr(lock, "time", clock)
    assert not second.acquire(wait_s=0.3, poll_s=0.05)
    assert clock.now >= 0.3 and clock.sleeps >= 6  # polled until the wait ran out
    monkeypatch.undo()
    assert lock.holder(redis, style) == "w1:job"
    assert not lock.release(redis, style, "w2:job")  # only the holder releases
    first.release()
    assert lock.holder(redis, style) is None
    assert second.acquire(wait_s=0)
    second.release()


def test_refreshed_while_held_and_expires_when_abandoned(redis: Redis) -> None:
    style = f"s{uuid.uuid4().hex[:8]}"
    held = lock.StyleLock(redis, style, "w1:job", ttl_s=0.6)
    assert held.acquire(wait_s=0)
    time.sleep(1.0)  # longer than the TTL: only the refresh thread keeps it
    assert lock.holder(redis, style) == "w1:job" and not held.lost.is_set()
    held._stop.set()  # the holder dies without releasing
    held._thread.join()
    waiter = lock.StyleLock(redis, style, "w2:job", ttl_s=5)
    assert waiter.acquire(wait_s=2, poll_s=0.05)  # after the lease expired
    waiter.release()


def test_a_taken_over_lease_is_reported_lost(redis: Redis) -> None:
    style = f"s{uuid.uuid4().hex[:8]}"
    held = lock.StyleLock(redis, style, "w1:job", ttl_s=0.3)
    assert held.acquire(wait_s=0)
    redis.set(lock.KEY_TEMPLATE.format(style), "intruder")
    assert held.lost.wait(timeout=2)
    held.release()
    assert lock.holder(redis, style) == "intruder"  # not released: not ours


def test_parent_can_release_a_dead_horses_lease(redis: Redis) -> None:
    style = f"s{uuid.uuid4().hex[:8]}"
    token = lock.lock_token("worker-a", "train-x")
    assert lock.StyleLock(redis, style, token, ttl_s=30).acquire(wait_s=0)
    assert lock.release(redis, style, lock.lock_token("worker-a", "train-x"))
    assert lock.holder(redis, style) is None


def test_an_expired_lease_is_taken_again_not_lost(redis: Redis) -> None:
    # Redis restarted without the key, or was down longer than the TTL: nobody else
    # holds the lease, so the running job keeps training instead of giving up.
    style = f"s{uuid.uuid4().hex[:8]}"
    held = lock.StyleLock(redis, style, "w1:job", ttl_s=0.6)
    assert held.acquire(wait_s=0)
    redis.delete(lock.KEY_TEMPLATE.format(style))
    time.sleep(0.6)  # a few refresh ticks
    assert not held.lost.is_set()
    assert lock.holder(redis, style) == "w1:job"
    held.release()
