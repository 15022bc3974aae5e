"""Fixtures of the chaos suite: real Redis (restartable), real workers, real stacks.

Each test injects one fault of issue #14 (items 1-5) and waits, bounded in time, for the
style to converge: ``ready``, ``queued`` with a live job, or ``failed`` with a reason.
Trainings are tiny (64 px crops, a quarter-width generator) so each takes seconds on CPU.
The measured recovery times are printed (``pytest -s``) as ``RECOVERY <fault>: <s>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import worker_harness
from redis_server import RedisProcess, running_redis
from worker_harness import WorkerEnv

#: Fast reconciler passes for tests (production: every 30 s, 15 s grace).
RECONCILE = {"RECONCILE_INTERVAL_S": "1", "RECONCILE_GRACE_S": "2"}


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test alone, with an append-only file, that can be killed."""
    folder = tmp_path / "redis"
    folder.mkdir()
    with running_redis(folder, persist=True) as server:
        yield server


@pytest.fixture
def chaos_env(tmp_path: Path, chaos_redis: RedisProcess, content_dir: Path) -> Iterator[WorkerEnv]:
    with worker_harness.worker_env(tmp_path, chaos_redis.url, content_dir, **RECONCILE) as env:
        yield env
