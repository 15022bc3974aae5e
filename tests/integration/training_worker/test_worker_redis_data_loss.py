"""Redis loses its data while a style trains and two wait (issue #24 item 5).

Before: the worker's RQ registration never came back (``/readyz`` said
``no_training_worker`` for as long as the worker ran), the training speed stayed gone
(``estimated_seconds`` null until a restart), and the waiting styles got jobs again only
after the training ended: the reconciler ran between jobs only.

Here the running horse is frozen (SIGSTOP) right after the ``FLUSHALL``: the worker is
busy with a training that does not end, so whatever comes back, comes back during it.
The API's own functions read Redis as ``/readyz`` and ``/training/estimate`` do.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import worker_harness
from redis_server import running_redis
from worker_harness import TINY, WorkerEnv, wait_for

from service import estimate
from service.training import TrainingQueue
from stylenet import TrainParams
from stylenet.cost import DeviceSpeed
from worker import speed

#: Generous hang guards, not expectations: each recovery takes a heartbeat or a pass.
DEADLINE_S = 90.0


@pytest.fixture
def env(tmp_path: Path, content_dir: Path) -> Iterator[WorkerEnv]:
    """A Redis of this test alone (it is flushed), fast reconciler passes."""
    folder = tmp_path / "redis"
    folder.mkdir()
    with (
        running_redis(folder) as server,
        worker_harness.worker_env(
            tmp_path, server.url, content_dir, RECONCILE_INTERVAL_S="1", RECONCILE_GRACE_S="2"
        ) as setup,
    ):
        yield setup


def _queue_health(env: WorkerEnv) -> TrainingQueue:
    queue = TrainingQueue(env.redis, queue_name=env.queue.name, job_timeout_s=3600)
    queue.health_ttl_s = 0  # every call asks Redis
    return queue


def _estimate(env: WorkerEnv) -> float | None:
    estimate._cache.clear()  # the API reuses a read for 5 s
    return estimate.estimate_for_params(env.redis, TrainParams.from_dict(TINY))


def test_worker_presence_speed_and_queued_jobs_come_back_during_a_training(
    env: WorkerEnv, style_image
) -> None:
    # The speed the worker found published at its start (its calibration is off here).
    speed.publish(env.redis, "cpu", DeviceSpeed("cpu", ((0.5, 0.01), (5.0, 0.1)), 1.0, time.time()))
    training = env.create_style(style_image, {**TINY, "iterations": 40})
    env.enqueue(training, {**TINY, "iterations": 40})
    waiting = [env.create_style(style_image, {**TINY, "iterations": 2}) for _ in range(2)]
    for style_id in waiting:
        env.enqueue(style_id, {**TINY, "iterations": 2})
    worker = env.start_worker()
    horse = env.wait_horse(training, min_iteration=2)
    health = _queue_health(env)
    assert health.health().workers == 1 and _estimate(env) is not None

    os.kill(horse, signal.SIGSTOP)
    try:
        env.redis.flushall()
        assert health.health().workers == 0 and _estimate(env) is None
        assert env.queue.job_ids == []

        wait_for(lambda: health.health().workers == 1, DEADLINE_S, "the worker registered")
        assert health.health().degraded == []
        assert env.rq_worker_state(worker) == "busy"
        wait_for(lambda: _estimate(env) is not None, DEADLINE_S, "the training speed")
        wanted = sorted(f"train-{s}" for s in waiting)
        wait_for(lambda: sorted(env.queue.job_ids) == wanted, DEADLINE_S, "the waiting jobs")
        # All of that while the training still runs (frozen), and its own job was not
        # enqueued a second time although its lease went with the data.
        assert env.record(training).status == "training"
        assert "reconciler: style " + training not in worker.log()
    finally:
        os.kill(horse, signal.SIGCONT)

    rec = env.wait_status(training, "ready", "failed", timeout=DEADLINE_S)
    assert rec.status == "ready", rec.error
    assert rec.metrics["attempt"] == 1 and rec.metrics["resumed_from"] == 0  # the same run
    for style_id in waiting:
        assert env.wait_status(style_id, "ready", "failed", timeout=DEADLINE_S).status == "ready"
    assert [v.version for v in env.record(training).versions] == [1]
    assert "Redis had lost this worker's registration and speed" in worker.log()
    assert worker.alive()
