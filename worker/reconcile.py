"""The reconciler: the one mechanism that makes a style's record agree with its job.

The model store is the source of truth of what should happen (a ``queued`` or
``training`` style must end up trained); Redis holds what is happening (the RQ job
``train-<style_id>`` and the training lease). Crashes and outages can leave the two
apart: the API dies between saving a style and enqueueing its job, a job ends while the
store refuses the final write, Redis loses its data, a lease is taken over. Instead of a
special case per failure, every worker runs :meth:`Reconciler.run` when it starts and
every ``STYLIZE_RECONCILE_INTERVAL_S``, idle or running a job; it compares each
``queued``/``training`` record with its job and lease and repairs (the table is in
``docs/ARCHITECTURE.md``):

============================================  ===============================================
record queued/training, unchanged for grace   repair
============================================  ===============================================
lease held (a live run)                       none, ever
this worker's own job trains it               none (its lease may have gone with Redis's data)
a bundled style awaiting its install          none: the API installs its bundled weights
job queued, scheduled or deferred             none (``training`` record -> ``queued``)
job started                                   none: RQ's abandoned-job handling owns it
no job                                        enqueue it again (idempotent job id)
job finished, failed, stopped or canceled     ``queued`` + enqueue again, at most
                                              ``reconcile_max_repairs`` times per run;
                                              then ``failed`` with the job's reason
============================================  ===============================================

Only one reconciler acts at a time (a short Redis lease), so two workers never both
delete and re-enqueue one job. Every write is a compare-and-swap on the record, so a
cancel or delete racing with a repair wins.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError, StopRequested
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from model_store import (
    InvalidTransition,
    ModelStore,
    Status,
    StyleNotFound,
    StyleRecord,
    awaits_install,
    read_bundle,
)

from . import lock
from .recovery import JOB_FUNCTION
from .settings import WorkerSettings

log = logging.getLogger(__name__)

#: Hash ``style_id -> repairs`` of the current run; fields of settled styles are dropped.
REPAIRS_KEY = "stylize:reconcile:repairs"
#: Held (``SET NX PX``) by the worker running a pass: one reconciler at a time.
PASS_LOCK_KEY = "stylize:reconcile:lock"

# The enqueue contract of docs/ARCHITECTURE.md ("The training job"), as service/training.py
# enqueues (the service and the worker never import each other; a test compares the two).
RESULT_TTL_S = 24 * 3600
FAILURE_TTL_S = 7 * 24 * 3600
RETRY = (2, [10, 60])
_WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def job_id(style_id: str) -> str:
    """Return the RQ job id of a style's training (``train-<style_id>``)."""
    return f"train-{style_id}"


@dataclass(frozen=True)
class Repair:
    """One change a pass made: ``action`` is ``enqueued``, ``requeued`` or ``failed``."""

    style_id: str
    action: str
    detail: str


def _age_s(rec: StyleRecord) -> float:
    return (datetime.now(UTC) - rec.updated_at).total_seconds()


def _job_reason(job: Job, status: JobStatus | None) -> str:
    """Return the last line of the job's exception, or what RQ recorded."""
    text = None
    try:
        result = job.latest_result()
        text = getattr(result, "exc_string", None) if result is not None else None
    except Exception:  # an old or partial job hash: the status says enough
        log.debug("no result for job %s", job.id, exc_info=True)
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    state = status.value if status is not None else "unknown"
    if lines:
        return f"the training job ended {state}: {lines[-1][:300]}"
    return f"the training job ended {state} without recording the style's result"


class Reconciler:
    """Repairs ``queued``/``training`` styles that no job or live lease stands behind.

    Args:
        store: the model store.
        connection: Redis with the RQ queue and the training leases.
        settings: the worker settings (queue, grace, repairs, job timeout).
        owner: who holds the pass lock (the worker's name), for diagnostics.
    """

    def __init__(
        self, store: ModelStore, connection: Redis, settings: WorkerSettings, owner: str
    ) -> None:
        """Bind the reconciler to a store, a Redis connection and the settings."""
        self.store, self.connection, self.settings, self.owner = (
            store,
            connection,
            settings,
            owner,
        )
        self.queue = Queue(
            settings.training_queue, connection=connection, serializer=JSONSerializer
        )
        self.bundled = _bundled_images(settings)
        #: The style this worker's own job trains now (set by the worker while busy).
        self.busy_style: str | None = None

    def run(self) -> list[Repair]:
        """Run one pass; return what it repaired (nothing if another worker's pass runs).

        Raises:
            redis.RedisError, model_store.ModelStoreError: Redis or the store failed; the
                pass is simply tried again at the next interval.
        """
        ttl_ms = int(max(self.settings.reconcile_interval_s, 5.0) * 1000)
        if not self.connection.set(PASS_LOCK_KEY, self.owner, nx=True, px=ttl_ms):
            return []
        try:
            records = self._active_records()
            self._forget_settled({r.id for r in records})
            repairs = []
            for rec in records:
                try:
                    repair = self._reconcile(rec)
                except (StyleNotFound, InvalidTransition):
                    continue  # deleted or canceled meanwhile: nothing to repair
                if repair is not None:
                    log.warning("reconciler: style %s %s: %s", *vars(repair).values())
                    repairs.append(repair)
            return repairs
        finally:
            lock.release_key(self.connection, PASS_LOCK_KEY, self.owner)

    def _active_records(self) -> list[StyleRecord]:
        records: list[StyleRecord] = []
        cursor = None
        while True:
            page = self.store.list_styles(
                status=[Status.QUEUED, Status.TRAINING], limit=1000, cursor=cursor
            )
            records.extend(page.items)
            if page.next_cursor is None:
                return records
            cursor = page.next_cursor

    def _forget_settled(self, active: set[str]) -> None:
        keys = self.connection.hkeys(REPAIRS_KEY)
        counted = {k.decode() if isinstance(k, bytes) else k for k in keys}
        settled = counted - active
        if settled:
            self.connection.hdel(REPAIRS_KEY, *settled)

    def _fetch(self, style_id: str) -> Job | None:
        try:
            return Job.fetch(
                job_id(style_id), connection=self.connection, serializer=JSONSerializer
            )
        except NoSuchJobError:
            return None

    def _reconcile(self, rec: StyleRecord) -> Repair | None:
        if _age_s(rec) < self.settings.reconcile_grace_s:
            return None  # a save just before its enqueue, or a run reporting progress
        if rec.id == self.busy_style:
            return None  # our own horse trains it (its lease may have gone with Redis's data)
        if awaits_install(rec, self.bundled.get(rec.id)):
            return None  # a demo style half-registered: the API installs its bundled weights
        if lock.holder(self.connection, rec.id) is not None:
            return None  # a live run: never touched
        job = self._fetch(rec.id)
        status = None if job is None else job.get_status(refresh=False)
        if job is not None and status in _WAITING:
            if rec.status is Status.TRAINING:  # a retry is coming; say so
                self.store.update(rec.id, status=Status.QUEUED)
                return Repair(rec.id, "requeued", f"its job is {status.value}")
            return None
        if job is not None and status in (JobStatus.STARTED, None):
            return None  # running, or a dead worker's: RQ's maintenance requeues or fails it
        if job is None:
            self.store.update(rec.id, status=Status.QUEUED)
            self._enqueue(rec)
            return Repair(rec.id, "enqueued", "no training job existed")
        reason = _job_reason(job, status)
        repairs = int(self.connection.hget(REPAIRS_KEY, rec.id) or 0)
        if repairs >= self.settings.reconcile_max_repairs:
            if repairs:
                reason = f"{reason} (gave up after {repairs + 1} runs)"
            self.store.update(rec.id, status=Status.FAILED, error=reason)
            self.connection.hdel(REPAIRS_KEY, rec.id)
            return Repair(rec.id, "failed", reason)
        self.store.update(rec.id, status=Status.QUEUED)
        self.connection.hincrby(REPAIRS_KEY, rec.id, 1)
        job.delete()
        self._enqueue(rec)
        return Repair(rec.id, "enqueued", f"{reason}; enqueued again")

    def _enqueue(self, rec: StyleRecord) -> None:
        # A duplicate was enqueued meanwhile (the API, a retry): what we wanted.
        with contextlib.suppress(DuplicateJobError):
            enqueue_training(
                self.queue, rec.id, dict(rec.params), self.settings.train_job_timeout_s
            )


def _bundled_images(settings: WorkerSettings) -> dict[str, str]:
    """``style id -> bundled style image sha256`` of the demo styles (none if unset)."""
    if settings.demo_styles_dir is None:
        return {}
    try:
        return {s.id: s.style_image_sha256 for s in read_bundle(settings.demo_styles_dir)}
    except (OSError, ValueError) as exc:
        log.warning("cannot read the demo styles (STYLIZE_DEMO_STYLES_DIR): %s", exc)
        return {}


def enqueue_training(queue: Queue, style_id: str, params: dict[str, Any], timeout_s: int) -> Job:
    """Enqueue ``worker.jobs.train_style(style_id, params)`` exactly as the service does.

    Raises:
        DuplicateJobError: the style already has a job.
    """
    return queue.enqueue(
        JOB_FUNCTION,
        style_id,
        params,
        job_id=job_id(style_id),
        unique=True,
        job_timeout=timeout_s,
        result_ttl=RESULT_TTL_S,
        failure_ttl=FAILURE_TTL_S,
        retry=Retry(max=RETRY[0], interval=RETRY[1]),
        description=f"train style {style_id}",
    )


def run_safely(reconciler: Reconciler) -> list[Repair]:
    """Run a pass, logging (not raising) a Redis or store failure: next time, then."""
    started = time.monotonic()
    try:
        repairs = reconciler.run()
    except StopRequested:  # SIGTERM while idle: RQ's way out of its loop
        raise
    except Exception:
        log.warning("reconciler pass failed; retrying at the next interval", exc_info=True)
        return []
    log.debug("reconciler pass took %.3f s", time.monotonic() - started)
    return repairs
