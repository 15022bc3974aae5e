"""The reconciler's repair table (docs/ARCHITECTURE.md), row by row, against a real Redis.

No worker runs here: each test builds the state a crash leaves (a record, an RQ job in
some state, a lease) and runs one pass. The chaos suite (tests/chaos) covers the same
repairs end to end with real workers.
"""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from store_workers import make_weights
from worker_harness import TINY, WorkerEnv

from model_store import Status, StyleRecord
from service.training import TrainingQueue
from worker import lock
from worker.reconcile import REPAIRS_KEY, Reconciler, enqueue_training
from worker.settings import WorkerSettings


def _reconciler(env: WorkerEnv, **settings: Any) -> Reconciler:
    values = {**env.settings_kwargs(), "reconcile_grace_s": 0, **settings}
    return Reconciler(env.store, env.redis, WorkerSettings(**values), owner="test")


def _style(env: WorkerEnv, image: Image.Image, status: str = "queued") -> StyleRecord:
    style_id = env.create_style(image, TINY)
    if status != "queued":
        env.store.update(style_id, status=status)
    return env.record(style_id)


def _ended_job(env: WorkerEnv, style_id: str, status: str) -> Job:
    job = env.enqueue(style_id, TINY)
    job.set_status(status)
    env.queue.remove(job)
    return job


def test_a_style_without_a_job_is_enqueued(worker_env: WorkerEnv, style_image) -> None:
    rec = _style(worker_env, style_image)  # the API died between save and enqueue
    repairs = _reconciler(worker_env).run()
    assert [(r.style_id, r.action) for r in repairs] == [(rec.id, "enqueued")]
    job = worker_env.job(rec.id)
    assert job.get_status() == "queued" and job.args == [rec.id, TINY]
    assert _reconciler(worker_env).run() == []  # idempotent: the job is there now


def test_young_records_and_live_leases_are_left_alone(worker_env: WorkerEnv, style_image) -> None:
    young = _style(worker_env, style_image)
    assert _reconciler(worker_env, reconcile_grace_s=60).run() == []
    lock.StyleLock(worker_env.redis, young.id, "elsewhere:job", ttl_s=30).acquire(wait_s=0)
    assert _reconciler(worker_env).run() == []  # a live run, whatever RQ says
    assert worker_env.redis.exists(f"rq:job:train-{young.id}") == 0


def test_a_training_record_whose_retry_waits_is_shown_queued(
    worker_env: WorkerEnv, style_image
) -> None:
    rec = _style(worker_env, style_image, "training")
    worker_env.enqueue(rec.id, TINY)  # e.g. scheduled or queued for a retry
    repairs = _reconciler(worker_env).run()
    assert [r.action for r in repairs] == ["requeued"]
    assert worker_env.record(rec.id).status == "queued"


@pytest.mark.parametrize("job_status", ["failed", "finished", "stopped"])
def test_a_job_that_ended_without_settling_is_run_again(
    worker_env: WorkerEnv, style_image, job_status: str
) -> None:
    rec = _style(worker_env, style_image, "training")  # e.g. its final write failed
    old = _ended_job(worker_env, rec.id, job_status)
    repairs = _reconciler(worker_env).run()
    assert [r.action for r in repairs] == ["enqueued"]
    assert worker_env.record(rec.id).status == "queued"
    job = worker_env.job(rec.id)
    assert job.get_status() == "queued" and job.created_at != old.created_at
    assert int(worker_env.redis.hget(REPAIRS_KEY, rec.id)) == 1


def test_after_the_last_repair_the_style_fails_and_keeps_serving(
    worker_env: WorkerEnv, style_image
) -> None:
    rec = _style(worker_env, style_image, "training")
    worker_env.store.publish(rec.id, make_weights(1))  # a good version 1
    worker_env.store.restart(rec.id, TINY)  # a retrain...
    worker_env.store.update(rec.id, status=Status.TRAINING)  # ...whose job ended unseen
    _ended_job(worker_env, rec.id, "failed")
    repairs = _reconciler(worker_env, reconcile_max_repairs=0).run()
    assert [r.action for r in repairs] == ["failed"]
    failed = worker_env.record(rec.id)
    assert failed.status == "failed" and "the training job ended failed" in (failed.error or "")
    assert failed.current_version == 1  # still serves
    assert worker_env.store.restart(rec.id, TINY).status == "queued"  # and can be retried
    assert worker_env.redis.hget(REPAIRS_KEY, rec.id) is None


def test_a_canceled_style_is_not_revived(worker_env: WorkerEnv, style_image) -> None:
    rec = _style(worker_env, style_image, "training")
    _ended_job(worker_env, rec.id, "stopped")
    worker_env.store.cancel(rec.id)
    assert _reconciler(worker_env).run() == []
    assert worker_env.record(rec.id).status == "canceled"


def test_one_pass_at_a_time(worker_env: WorkerEnv, style_image) -> None:
    _style(worker_env, style_image)
    worker_env.redis.set("stylize:reconcile:lock", "another-worker", px=5000)
    assert _reconciler(worker_env).run() == []


def test_the_worker_enqueues_as_the_service_does(worker_env: WorkerEnv, redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    service = TrainingQueue(redis, queue_name=worker_env.queue.name, job_timeout_s=1234)
    ours = Job.fetch(
        service.enqueue("aaaaaaaaaaaa", {"iterations": 2}).id,
        connection=redis,
        serializer=JSONSerializer,
    )
    theirs = enqueue_training(worker_env.queue, "bbbbbbbbbbbb", {"iterations": 2}, 1234)
    fields = ("func_name", "timeout", "result_ttl", "failure_ttl", "retries_left")
    assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]
    assert ours.retry_intervals == theirs.retry_intervals
    assert ours.id.removeprefix("train-") == ours.args[0]
    assert theirs.id == "train-bbbbbbbbbbbb"
