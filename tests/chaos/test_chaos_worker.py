"""Chaos against a real worker and a real Redis: issue #14 items 1-3.

Each test injects a fault mid-training (or between save and enqueue) and then waits,
at most ``CONVERGE_S`` after the fault ends, for the style to be ``ready``; a resumed run
must start from its checkpoint (nothing lost).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from chaos_helpers import CONVERGE_S, Stopwatch, report
from PIL import Image
from redis_server import RedisProcess
from rq.scheduler import RQScheduler
from worker_harness import TINY, WorkerEnv, wait_for

from worker import lock

LONG = {**TINY, "iterations": 24}


def _refuse_writes(env: WorkerEnv, style_id: str) -> Path:
    """Make the store refuse every record write of the style (reads still work).

    The file store takes ``.locks/<id>.lock`` for each manifest write; a directory in its
    place makes every write fail with a ``BackendError``, as a read-only volume does.
    """
    path = env.tmp / "models" / ".locks" / f"{style_id}.lock"
    while not path.is_dir():
        path.unlink(missing_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            continue  # a writer re-created the file in between
    return path


def test_item1_store_refuses_the_final_writes(
    chaos_env: WorkerEnv, style_image: Image.Image
) -> None:
    # Before: the job ended failed, the record stayed "training 270/300" forever.
    style_id = chaos_env.create_style(style_image, LONG)
    job = chaos_env.enqueue(style_id, LONG, retries=1, intervals=[1])
    chaos_env.start_worker()
    chaos_env.wait_horse(style_id, min_iteration=4)
    blocked = _refuse_writes(chaos_env, style_id)

    # Every attempt fails to write (progress, publish, its own failure): the job ends
    # failed with the record still "training". The reconciler cannot write either.
    wait_for(lambda: job.get_status(refresh=True) == "failed", CONVERGE_S, "the job to fail")
    time.sleep(3)
    stuck = chaos_env.record(style_id)
    assert stuck.status == "training" and stuck.progress is not None
    assert "checkpoint.safetensors" in chaos_env.scratch_files(style_id)  # kept for resume

    blocked.rmdir()  # the store takes writes again
    recovered = Stopwatch()
    rec = chaos_env.wait_status(style_id, "ready", "failed", timeout=CONVERGE_S)
    report("item 1, store refused writes until fixed -> ready", recovered())
    assert rec.status == "ready", rec.error
    assert rec.metrics["resumed_from"] >= 4  # from the checkpoint: nothing lost
    assert rec.progress is None  # a ready style shows no stale progress
    assert [v.version for v in rec.versions] == [1]


@pytest.mark.parametrize("how", ["deleted", "taken"])
def test_item1_training_lease_disappears(
    chaos_env: WorkerEnv, style_image: Image.Image, how: str
) -> None:
    # Deleted: the run must outlast a lease refresh tick (TTL/3: 1.7 s in the harness)
    # after the fault, else it ends before it notices (a quiet machine did the 20 steps
    # left in less); 240 steps take several seconds anywhere.
    params = {**TINY, "iterations": 240} if how == "deleted" else LONG
    style_id = chaos_env.create_style(style_image, params)
    job = chaos_env.enqueue(style_id, params)
    worker = chaos_env.start_worker()
    chaos_env.wait_horse(style_id, min_iteration=4)
    key = lock.KEY_TEMPLATE.format(style_id)
    fault = Stopwatch()
    if how == "deleted":
        # Redis lost the key (restarted without it, or down past its TTL): nobody else
        # trains, so the run takes the lease again and goes on.
        chaos_env.redis.delete(key)
    else:
        # Another holder took it (for 4 s): the run must stop writing at once, and the
        # reconciler must leave the style alone while that lease lives.
        chaos_env.redis.set(key, "intruder:job", px=4000)
        wait_for(lambda: job.get_status(refresh=True) == "failed", 30, "the run to stop")
        assert chaos_env.record(style_id).status == "training"  # not ours to settle

    rec = chaos_env.wait_status(style_id, "ready", "failed", timeout=CONVERGE_S)
    report(f"item 1, training lease {how} -> ready", fault())
    assert rec.status == "ready", rec.error
    if how == "deleted":
        assert "taken again" in worker.log() and rec.metrics["attempt"] == 1
    else:
        assert "taken by another job" in worker.log()
        assert rec.metrics["resumed_from"] >= 4
        assert "reconciler: style" in worker.log()


def test_item2_saved_style_without_a_job(chaos_env: WorkerEnv, style_image: Image.Image) -> None:
    # What an API killed (kill -9) between saving a style and enqueueing its job leaves:
    # the record, queued, and no job in Redis. Before: queued forever.
    worker = chaos_env.start_worker()
    wait_for(lambda: chaos_env.rq_worker_state(worker) == "idle", 60, "the worker")
    style_id = chaos_env.create_style(style_image, {**TINY, "iterations": 4})
    saved = Stopwatch()
    rec = chaos_env.wait_status(style_id, "ready", "failed", timeout=CONVERGE_S)
    report("item 2, saved without a job -> ready", saved())
    assert rec.status == "ready", rec.error
    assert "no training job existed" in worker.log()


def _scheduler_alive(env: WorkerEnv) -> bool:
    """Whether a scheduler holds the queue's lock and has beaten in the last few seconds."""
    holder = env.redis.get(RQScheduler.get_locking_key(env.queue.name))
    if holder is None:
        return False
    beat = env.redis.hget(f"rq:scheduler:{holder.decode()}", "last_heartbeat")
    return beat is not None


def test_item3_redis_down_for_30_s(
    chaos_env: WorkerEnv, chaos_redis: RedisProcess, style_image: Image.Image
) -> None:
    # Before: the scheduler died at once and the worker exited 23 s into a 75 s outage.
    style_id = chaos_env.create_style(style_image, LONG)
    chaos_env.enqueue(style_id, LONG)
    worker = chaos_env.start_worker()
    horse = chaos_env.wait_horse(style_id, min_iteration=2)
    wait_for(lambda: _scheduler_alive(chaos_env), 30, "the scheduler")
    # Frozen for the outage so that the run is still going when Redis comes back.
    os.kill(horse, signal.SIGSTOP)
    chaos_redis.kill()
    time.sleep(30)
    assert worker.alive(), worker.log()[-3000:]
    chaos_redis.start()  # the same port and append-only file
    os.kill(horse, signal.SIGCONT)
    back = Stopwatch()

    rec = chaos_env.wait_status(style_id, "ready", "failed", timeout=CONVERGE_S)
    report("item 3, Redis down 30 s mid-training -> ready", back())
    assert rec.status == "ready", rec.error
    assert worker.alive()
    wait_for(lambda: _scheduler_alive(chaos_env), 15, "the scheduler after the outage")

    # And the same worker takes new work.
    second = chaos_env.create_style(style_image, {**TINY, "iterations": 2})
    chaos_env.enqueue(second, {**TINY, "iterations": 2})
    assert chaos_env.wait_status(second, "ready", timeout=CONVERGE_S).status == "ready"
    assert worker.alive()
    assert "Redis unavailable" in worker.log()


def test_item3_worker_started_while_redis_is_down(
    chaos_env: WorkerEnv, chaos_redis: RedisProcess, style_image: Image.Image
) -> None:
    # Before: the worker exited with status 2 ("cannot reach Redis").
    chaos_redis.kill()
    worker = chaos_env.start_worker()
    wait_for(lambda: "Redis unavailable" in worker.log(), 60, "the worker to wait for Redis")
    time.sleep(3)
    assert worker.alive()
    chaos_redis.start()
    back = Stopwatch()
    style_id = chaos_env.create_style(style_image, {**TINY, "iterations": 2})
    chaos_env.enqueue(style_id, {**TINY, "iterations": 2})
    rec = chaos_env.wait_status(style_id, "ready", "failed", timeout=CONVERGE_S)
    report("item 3, worker started while Redis was down -> ready", back())
    assert rec.status == "ready", rec.error
