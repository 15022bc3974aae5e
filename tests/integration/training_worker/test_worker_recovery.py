"""Cancel, crashes and shutdowns of real workers in the middle of a training.

The rules under test (docs/ARCHITECTURE.md, "Training worker"):

* cancel: the style stays ``canceled``, the job stops promptly, the scratch is removed;
* a killed work horse uses one RQ retry: the job is requeued and resumes from its last
  checkpoint; when no retry is left the style ends ``failed`` with the reason;
* a dead worker: its orphaned horse stops at its next report and requeues the job;
* a warm shutdown (SIGTERM) requeues the job without using a retry.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from PIL import Image
from rq.command import send_stop_job_command
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from worker_harness import TINY, WorkerEnv, pid_alive, wait_for

from model_store import StyleNotFound
from stylenet import load_generator
from worker import lock
from worker.process import TrainingWorker
from worker.settings import WorkerSettings

LONG = {**TINY, "iterations": 24}


def _start_training(
    worker_env: WorkerEnv,
    style_image: Image.Image,
    retries: int = 2,
    intervals: list[int] | None = None,
    params: dict | None = None,
):
    params = params or LONG
    style_id = worker_env.create_style(style_image, params)
    job = worker_env.enqueue(style_id, params, retries=retries, intervals=intervals)
    worker = worker_env.start_worker()
    return style_id, job, worker


@pytest.mark.parametrize("how", ["stop-job", "store-only", "delete"])
def test_cancel_mid_run(worker_env: WorkerEnv, style_image: Image.Image, how: str) -> None:
    style_id, job, worker = _start_training(worker_env, style_image)
    horse = worker_env.wait_horse(style_id, min_iteration=4)
    assert "checkpoint.safetensors" in worker_env.scratch_files(style_id)

    if how == "delete":
        worker_env.store.delete(style_id)
    else:
        worker_env.store.cancel(style_id)  # what DELETE /styles/{id} and cancel do first
        if how == "stop-job":
            send_stop_job_command(worker_env.redis, job.id, serializer=JSONSerializer)

    wait_for(lambda: not pid_alive(horse), 10, "the work horse to stop")
    expected = {"stop-job": "stopped", "store-only": "finished", "delete": "finished"}[how]
    wait_for(lambda: job.get_status(refresh=True) == expected, 10, f"job {expected}")
    if how == "delete":
        with pytest.raises(StyleNotFound):
            worker_env.record(style_id)
    else:
        rec = worker_env.record(style_id)
        assert rec.status == "canceled" and rec.current_version is None
    wait_for(lambda: not worker_env.scratch_files(style_id), 10, "the scratch to be removed")
    progress = job.get_meta(refresh=True)["progress"]
    assert progress["iteration"] < LONG["iterations"]
    # The worker survives and goes back to waiting for jobs.
    wait_for(lambda: worker_env.rq_worker_state(worker) == "idle", 10, "the worker to idle")
    assert worker.alive()


def test_killed_horse_is_retried_and_resumes(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    # Retries after a delay, as the service enqueues them: the worker's RQ scheduler
    # moves the job back to the queue when the delay is over.
    style_id, job, worker = _start_training(worker_env, style_image, intervals=[1])
    horse = worker_env.wait_horse(style_id, min_iteration=4)
    os.kill(horse, signal.SIGKILL)
    wait_for(lambda: job.get_status(refresh=True) == "scheduled", 10, "a scheduled retry")
    assert worker_env.record(style_id).status == "queued"

    rec = worker_env.wait_status(style_id, "ready")
    assert 4 <= rec.metrics["resumed_from"] < LONG["iterations"]
    assert rec.metrics["attempt"] == 2 and rec.metrics["iterations"] == LONG["iterations"]
    # The style is ready at publish; RQ records the job a moment later.
    wait_for(lambda: job.get_status(refresh=True) == "finished", 10, "the job to finish")
    job.refresh()
    assert job.retries_left == 1  # one retry used
    assert worker.alive()
    generator, _ = load_generator(worker_env.store.open_weights(style_id))
    assert generator.config.width == 0.25


def test_killed_horse_without_retries_left_fails_the_style(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    style_id, job, _ = _start_training(worker_env, style_image, retries=1)
    first = worker_env.wait_horse(style_id, min_iteration=2)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: job.get_meta(refresh=True).get("pid") not in (None, first), 30, "a retry")
    second = worker_env.wait_horse(style_id, min_iteration=2)
    os.kill(second, signal.SIGKILL)

    rec = worker_env.wait_status(style_id, "failed", timeout=30)
    assert rec.error == (
        "the training process was killed by SIGKILL, e.g. by the out-of-memory killer "
        "(gave up after 2 attempts)"
    )
    wait_for(lambda: job.get_status(refresh=True) == "failed", 10, "the job to fail")
    wait_for(lambda: not worker_env.scratch_files(style_id), 10, "the scratch to be removed")


def test_dead_worker_requeues_and_another_worker_resumes(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    style_id, job, worker = _start_training(worker_env, style_image)
    horse = worker_env.wait_horse(style_id, min_iteration=4)
    os.kill(worker.pid, signal.SIGKILL)  # the worker only: its horse is orphaned

    # The orphan notices at its next progress report, stops and requeues the job.
    wait_for(lambda: not pid_alive(horse), 15, "the orphaned horse to stop")
    wait_for(lambda: job.get_status(refresh=True) == "queued", 10, "the job to be requeued")
    assert worker_env.record(style_id).status == "queued"

    assert worker_env.wait_resumed(worker_env.start_worker()) >= 4
    assert job.get_meta(refresh=True)["attempt"] == 2


def test_worker_and_horse_killed_job_is_requeued_by_maintenance(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    style_id, job, worker = _start_training(worker_env, style_image)
    horse = worker_env.wait_horse(style_id, min_iteration=4)
    # The whole host dies: worker, scheduler and horse. The horse is frozen first: alive
    # after its worker, it would notice the orphaning at its next report and requeue
    # itself (test_dead_worker_requeues_and_another_worker_resumes), which made this
    # test flaky under load.
    os.kill(horse, signal.SIGSTOP)
    worker.kill()
    os.kill(horse, signal.SIGKILL)
    wait_for(lambda: not pid_alive(horse), 10, "the horse to die")
    assert job.get_status(refresh=True) == "started"  # nobody told RQ

    # What the next maintenance of any live worker does once the job's heartbeat has
    # expired (about 90 s later; time is moved forward here instead of waited for).
    settings = WorkerSettings(**worker_env.settings_kwargs())
    live = TrainingWorker(settings, connection=worker_env.redis, store=worker_env.store)
    StartedJobRegistry(
        worker_env.queue.name, connection=worker_env.redis, serializer=JSONSerializer
    ).cleanup(timestamp=time.time() + 3600, exception_handlers=live._exc_handlers)

    job.refresh()
    assert job.get_status() == "queued" and job.retries_left == 1
    assert worker_env.record(style_id).status == "queued"
    assert worker_env.wait_resumed(worker_env.start_worker()) >= 4


def test_warm_shutdown_requeues_without_using_a_retry(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    style_id, job, worker = _start_training(worker_env, style_image)
    worker_env.wait_horse(style_id, min_iteration=4)
    os.kill(worker.pid, signal.SIGTERM)

    assert worker.process.wait(timeout=20) == 0
    job.refresh()
    assert job.get_status() == "queued" and job.retries_left == 2
    assert worker_env.record(style_id).status == "queued"

    assert worker_env.wait_resumed(worker_env.start_worker()) >= 4


def test_a_job_run_twice_never_trains_twice_at_once(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    # The first run must outlast a second worker's start and the duplicate's own wait for
    # the lease (lock TTL + 5 s = 10 s; with one retry, spent by the requeue, the duplicate
    # used to fail the style under the healthy first run then, as it did on a loaded
    # machine): about 30 s of training on a quiet 2-core machine.
    params = {**LONG, "iterations": 200}
    style_id, job, first = _start_training(worker_env, style_image, retries=1, params=params)
    worker_env.wait_horse(style_id, min_iteration=2)
    second = worker_env.start_worker()
    wait_for(lambda: worker_env.rq_worker_state(second) == "idle", 30, "the second worker")

    # RQ decides the first worker is dead (missed heartbeats, say a network partition)
    # and requeues its job while its horse is still training: the second worker runs it.
    registry = StartedJobRegistry(
        worker_env.queue.name, connection=worker_env.redis, serializer=JSONSerializer
    )
    registry.cleanup(timestamp=time.time() + 3600)
    wait_for(lambda: worker_env.rq_worker_state(second) == "busy", 10, "the duplicate run")
    assert lock.holder(worker_env.redis, style_id) == lock.lock_token(first.name, job.id)

    rec = worker_env.wait_status(style_id, "ready", "failed")
    assert rec.status == "ready", rec.error
    wait_for(lambda: worker_env.rq_worker_state(second) == "idle", 30, "the duplicate to end")
    rec = worker_env.record(style_id)
    assert [v.version for v in rec.versions] == [1]  # trained and published once
    assert "already published by another run of this job" in second.log()
    assert "training on" not in second.log()
    assert lock.holder(worker_env.redis, style_id) is None


def test_an_idle_worker_stops_on_sigterm(worker_env: WorkerEnv) -> None:
    # A stop asked for is not "the loop ended unexpectedly": no restart of the loop.
    worker = worker_env.start_worker()
    wait_for(lambda: worker_env.rq_worker_state(worker) == "idle", 60, "the worker to idle")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.process.wait(timeout=20) == 0
    assert "ended unexpectedly" not in worker.log()
