"""Fixtures for the training-worker tests (helpers live in ``worker_harness``)."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from worker_harness import REPO, WorkerEnv

from model_store import open_store


@pytest.fixture
def worker_env(tmp_path: Path, redis_url: str, content_dir: Path) -> Iterator[WorkerEnv]:
    queue_name = f"training-{uuid.uuid4().hex[:8]}"
    store_url = (tmp_path / "models").as_uri()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "STYLIZE_REDIS_URL": redis_url,
        "STYLIZE_MODEL_STORE": store_url,
        "STYLIZE_CONTENT_DIR": str(content_dir),
        "STYLIZE_MIN_CONTENT_PHOTOS": "0",  # the fixture folder holds a few samples only
        "STYLIZE_DEVICE": "cpu",
        "STYLIZE_TRAINING_QUEUE": queue_name,
        "STYLIZE_PROGRESS_INTERVAL_S": "0.2",
        "STYLIZE_PREVIEW_EVERY": "4",
        "STYLIZE_LOCK_TTL_S": "5",
        # The speed calibration at start is tested with the whole stack (tests/e2e).
        "STYLIZE_CALIBRATE": "false",
        "OMP_NUM_THREADS": "1",  # two workers on two cores must not oversubscribe
    }
    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    setup = WorkerEnv(redis, queue, open_store(store_url), env, tmp_path)
    try:
        yield setup
    finally:
        for worker in setup.workers:  # killed as a group even if dead: its scheduler
            with contextlib.suppress(Exception):
                worker.kill()
        for pid in setup.horse_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        redis.close()
