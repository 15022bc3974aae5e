"""The producer side of the training contract (docs/ARCHITECTURE.md, "The training job").

Jobs are enqueued by dotted path with JSON arguments and the JSON serializer, so this
module imports neither ``worker`` nor any training code.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis import ConnectionPool, Redis
from redis.exceptions import LockError, RedisError
from rq import Queue, Retry, Worker
from rq.command import send_stop_job_command
from rq.exceptions import (
    DeserializationError,
    DuplicateJobError,
    InvalidJobOperation,
    NoSuchJobError,
)
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from service.errors import Conflict, Unavailable

log = logging.getLogger(__name__)

TRAIN_FUNCTION = "worker.jobs.train_style"
#: The quality score a training enqueues on the same queue after it publishes.
SCORE_FUNCTION = "worker.scoring.score_style"
RESULT_TTL_S = 24 * 3600
FAILURE_TTL_S = 7 * 24 * 3600
RETRY = (2, [10, 60])  # Retry(max=2, interval=[10, 60]): transient worker failures


#: Seconds a start lock lives if its holder dies inside the section.
START_LOCK_TTL_S = 10


def _unavailable(exc: RedisError) -> Unavailable:
    return Unavailable(
        f"the training queue is unavailable: {exc}", code="queue_unavailable", retry_after=5
    )


def job_id(style_id: str) -> str:
    """Return the RQ job id of a style's training (one training per style)."""
    return f"train-{style_id}"


@dataclass(frozen=True)
class QueueHealth:
    """What ``/readyz`` says about training: Redis reachable, workers listening."""

    redis: bool
    workers: int | None  # None when Redis cannot be asked

    @property
    def degraded(self) -> list[str]:
        """Names of the parts that are down (training only; inference does not need them)."""
        if not self.redis:
            return ["queue_unavailable"]
        return ["no_training_worker"] if not self.workers else []


@dataclass(frozen=True)
class QueuedJob:
    """A job on the training queue, as :meth:`TrainingQueue.snapshot` read it."""

    id: str
    function: str | None  # dotted path; None when its data could not be read
    args: tuple[Any, ...] = ()
    started_at: datetime | None = None  # running jobs only


@dataclass(frozen=True)
class QueueSnapshot:
    """The training queue at one moment: what waits (next first), what runs, who works."""

    waiting: list[QueuedJob] = field(default_factory=list)
    running: list[QueuedJob] = field(default_factory=list)
    workers: int = 0


def _short_timeout_client(redis: Redis, timeout_s: float) -> Redis:
    """Return a client of the same server as ``redis`` that gives up after ``timeout_s``."""
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs, socket_timeout=timeout_s)
    if "socket_connect_timeout" in kwargs:
        kwargs["socket_connect_timeout"] = timeout_s
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _restore(job_id: str, raw: dict[bytes, bytes], redis: Redis) -> Job | None:
    """Return the job of a hash read from Redis; None if it is gone or not a whole job.

    A job deleted meanwhile reads empty, and a late ``save_meta`` of a deleted job
    leaves a hash holding ``meta`` alone (RQ's ``fetch_many`` raises on that).
    """
    if not raw:
        return None
    job = Job(job_id, connection=redis, serializer=JSONSerializer)
    try:
        job.restore(raw)
    except (NoSuchJobError, ValueError, TypeError, KeyError) as exc:
        log.debug("job %s is not readable: %s", job_id, exc)
        return None
    return job


def _is(job: Job | None, status: JobStatus) -> bool:
    return job is not None and job.get_status(refresh=False) == status


def _queued(job: Job, *, started: bool = False) -> QueuedJob:
    """Return what the estimates need of ``job`` (its function and arguments)."""
    try:
        function, args = job.func_name, tuple(job.args)
    except (DeserializationError, ValueError, TypeError):  # not data this service wrote
        function, args = None, ()
    return QueuedJob(job.id, function, args, job.started_at if started else None)


class TrainingQueue:
    """Enqueues and cancels training jobs on the RQ queue."""

    #: ``/readyz`` may be probed often: Redis is asked at most this often.
    health_ttl_s = 2.0
    #: Seconds ``/readyz`` waits for Redis. A Redis that hangs (paused, partitioned) would
    #: otherwise hold the probe for the operational client's 5 s timeout, longer than the
    #: health checks' own timeouts, and a replica that serves fine would be marked down.
    health_timeout_s = 1.0

    def __init__(self, redis: Redis, *, queue_name: str, job_timeout_s: int) -> None:
        """Use queue ``queue_name`` on ``redis``; jobs get ``job_timeout_s``."""
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
        self.job_timeout_s = job_timeout_s
        self._health: tuple[float, QueueHealth] | None = None
        self._probe_queue = Queue(
            queue_name, connection=_short_timeout_client(redis, self.health_timeout_s)
        )

    @property
    def reader(self) -> Redis:
        """A client of the same Redis that gives up after ``health_timeout_s``.

        For reads that only enrich an answer (the queue's snapshot, the published speed):
        a Redis that hangs must not hold a polled ``GET /styles`` for the full timeout.
        """
        return self._probe_queue.connection

    def health(self) -> QueueHealth:
        """Return whether Redis answers and how many workers listen (cached briefly)."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < self.health_ttl_s:
            return self._health[1]
        try:
            health = QueueHealth(True, Worker.count(queue=self._probe_queue))
        except RedisError:
            health = QueueHealth(False, None)
        self._health = (now, health)
        return health

    def snapshot(self) -> QueueSnapshot | None:
        """Return the jobs waiting on the queue (next first) and running; None: no Redis.

        Read on the short-timeout client (a polled ``GET /styles/{id}`` must not hang on
        a stalled Redis). Jobs move while this reads: the waiting list and the started
        registry are read in one transaction, then each job's status is checked and a
        job that has moved on since (started, finished, canceled, deleted) is left out,
        so a race costs an estimate a moment's accuracy, never an error.
        """
        redis = self.reader
        registry = StartedJobRegistry(queue=self._probe_queue)
        try:
            with redis.pipeline(transaction=True) as pipe:
                pipe.lrange(self.queue.key, 0, -1)
                pipe.zrange(registry.key, 0, -1)
                waiting_ids, running_entries = pipe.execute()
            waiting_ids = [i.decode() if isinstance(i, bytes) else i for i in waiting_ids]
            running_ids = [registry.parse_job_id(e) for e in running_entries]
            running_ids = [i for i in dict.fromkeys(running_ids) if i not in waiting_ids]
            with redis.pipeline(transaction=False) as pipe:
                for job_id in [*waiting_ids, *running_ids]:
                    pipe.hgetall(Job.key_for(job_id))
                hashes = pipe.execute()
            workers = Worker.count(queue=self._probe_queue)
        except RedisError as exc:
            log.warning("could not read the training queue: %s", exc)
            return None
        jobs = [
            _restore(job_id, raw, redis)
            for job_id, raw in zip([*waiting_ids, *running_ids], hashes, strict=True)
        ]
        waiting = [_queued(job) for job in jobs[: len(waiting_ids)] if _is(job, JobStatus.QUEUED)]
        running = [
            _queued(job, started=True)
            for job in jobs[len(waiting_ids) :]
            if _is(job, JobStatus.STARTED)
        ]
        return QueueSnapshot(waiting, running, workers)

    def enqueue(self, style_id: str, params: dict[str, Any]) -> Job:
        """Enqueue ``worker.jobs.train_style(style_id, params)``.

        Raises:
            Unavailable: Redis cannot be reached (retry later).
            Conflict: a job for this style already exists.
        """
        try:
            return self.queue.enqueue(
                TRAIN_FUNCTION,
                style_id,
                params,
                job_id=job_id(style_id),
                unique=True,
                job_timeout=self.job_timeout_s,
                result_ttl=RESULT_TTL_S,
                failure_ttl=FAILURE_TTL_S,
                retry=Retry(max=RETRY[0], interval=RETRY[1]),
                description=f"train style {style_id}",
            )
        except DuplicateJobError as exc:
            raise Conflict(
                f"a training job for style {style_id!r} exists", code="job_exists"
            ) from exc
        except RedisError as exc:
            raise _unavailable(exc) from exc

    @contextlib.contextmanager
    def starting(self, style_id: str) -> Iterator[None]:
        """Hold the style's start lock: one caller at a time forgets, restarts and enqueues.

        Without it, concurrent retrains raced inside RQ: one caller's ``get_status`` read
        a job another had just deleted (``InvalidJobOperation``, a 500), or deleted the
        job another had just enqueued. The lock is short (the section is a few Redis
        round trips) and expires by itself if its holder dies.

        Raises:
            Conflict: another request is starting this style's training right now.
            Unavailable: Redis cannot be reached.
        """
        try:
            lock = self.redis.lock(f"stylize:starting:{style_id}", timeout=START_LOCK_TTL_S)
            if not lock.acquire(blocking=False):
                raise Conflict(
                    f"a training of style {style_id!r} is being started by another request",
                    code="not_restartable",
                    retry_after=1,
                )
        except RedisError as exc:
            raise _unavailable(exc) from exc
        try:
            yield
        finally:
            with contextlib.suppress(RedisError, LockError):
                lock.release()

    def forget_finished(self, style_id: str) -> None:
        """Delete the style's previous job so a retrain can be enqueued under its id.

        Job ids are unique per style (:func:`job_id`) and RQ keeps a finished job for
        ``RESULT_TTL_S`` (a failed one for ``FAILURE_TTL_S``), so the old job must go
        first; RQ would also carry its fields (``meta``) into a new job of the same id.

        Raises:
            Conflict: the previous job is still queued or running (retry shortly: a
                job is recorded finished a moment after its style is ready).
            Unavailable: Redis cannot be reached.
        """
        try:
            job = Job.fetch(job_id(style_id), connection=self.redis, serializer=JSONSerializer)
            status = job.get_status()
            if status not in (
                JobStatus.FINISHED,
                JobStatus.FAILED,
                JobStatus.STOPPED,
                JobStatus.CANCELED,
            ):
                raise Conflict(
                    f"the previous training job of style {style_id!r} is still "
                    f"{status.value if status else 'unknown'}",
                    code="job_exists",
                    retry_after=2,
                )
            job.delete()
        except NoSuchJobError:
            # Gone, or a hash without a job in it (a late ``save_meta`` of a deleted job
            # writes ``meta`` alone), which would refuse the new job's id for good. Under
            # the start lock, and the style not training: nobody is writing a job here.
            with contextlib.suppress(RedisError):
                self.redis.delete(Job.key_for(job_id(style_id)))
        except InvalidJobOperation:
            return  # deleted between the fetch and the status read
        except RedisError as exc:
            raise _unavailable(exc) from exc

    def cancel(self, style_id: str) -> str:
        """Stop or dequeue the style's job, best effort; return what was done.

        The store's cancel (done first by the caller) is what the worker obeys in the
        end, so a Redis failure here is logged, not raised.
        """
        try:
            job = Job.fetch(job_id(style_id), connection=self.redis, serializer=JSONSerializer)
            status = job.get_status()
            if status == JobStatus.STARTED:
                send_stop_job_command(self.redis, job.id, serializer=JSONSerializer)
                return "stopped"
            if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
                job.cancel()
                return "canceled"
            return f"left ({status.value})"
        except NoSuchJobError:
            return "none"
        except (InvalidJobOperation, RedisError) as exc:
            log.warning("could not cancel the training job of %s: %s", style_id, exc)
            return "failed"

    def ping(self) -> bool:
        """Whether Redis answers."""
        try:
            return bool(self.redis.ping())
        except RedisError:
            return False
