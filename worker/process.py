"""The RQ worker that runs training jobs: one job at a time, each in a forked work horse.

:class:`TrainingWorker` is RQ's forking ``Worker`` with the JSON serializer and three
additions, all in the parent process (which never initializes CUDA):

* a killed work horse (``kill -9``, OOM killer) releases its style's training lease and
  settles the style through :func:`worker.recovery.settle_lost_job` before RQ requeues
  or fails the job;
* jobs of dead workers, found by RQ's maintenance (``AbandonedJobError``), are settled
  the same way;
* a warm shutdown (SIGTERM/SIGINT) asks the horse to stop at its next progress report;
  the job is requeued without using a retry and resumes from its checkpoint elsewhere;
* RQ's periodic maintenance also collects the model store's garbage every
  ``store_gc_interval_s`` (replaced previews, dropped versions, crashed publishes).
  Several workers may do it at once: deleting an unreferenced file twice is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import Any

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from model_store import ModelStore

from . import lock
from .recovery import clean_up_after, describe_exit, settle_lost_job, style_of
from .settings import WorkerSettings

log = logging.getLogger(__name__)


class TrainingWorker(Worker):
    """A forking RQ worker on the training queue (see the module docstring)."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        connection: Redis,
        store: ModelStore,
        name: str | None = None,
    ) -> None:
        """Build a worker listening on ``settings.training_queue``."""
        self.settings, self.store = settings, store
        self._next_store_gc = 0.0  # monotonic time of the next store gc; now, at first
        super().__init__(
            [settings.training_queue],
            name=name or settings.worker_name,
            connection=connection,
            serializer=JSONSerializer,
            exception_handlers=[self._on_exception],
            work_horse_killed_handler=self._on_horse_killed,
            maintenance_interval=settings.maintenance_interval_s,
        )

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance, then the store's garbage collection when it is due."""
        super().run_maintenance_tasks()
        interval = self.settings.store_gc_interval_s
        now = time.monotonic()
        if interval <= 0 or now < self._next_store_gc:
            return
        self._next_store_gc = now + interval
        try:
            removed = self.store.gc()
        except Exception:  # a flaky store must not stop the worker; next time, then
            log.warning("model store garbage collection failed", exc_info=True)
            return
        if removed:
            log.info("model store gc removed %d unreferenced files", len(removed))

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job`` in a work horse, then release what a killed horse left behind."""
        try:
            super().execute_job(job, queue)
        finally:
            style_id = style_of(job)
            if style_id is not None:
                lock.release(self.connection, style_id, lock.lock_token(self.name, job.id))
                clean_up_after(self.store, job)

    def handle_warm_shutdown_request(self) -> None:
        """Ask a running horse to stop at its next report (it requeues itself)."""
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            log.info("asking work horse %d to checkpoint-stop and requeue", self.horse_pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, signal.SIGTERM)  # the horse only, not its loaders

    def _on_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        style_id = style_of(job)
        if style_id is None:
            return
        # Let the retry take the lease at once instead of waiting for it to expire.
        lock.release(self.connection, style_id, lock.lock_token(self.name, job.id))
        # RQ saves this job object when requeueing it: keep the horse's progress in meta.
        try:
            job.get_meta(refresh=True)
        except Exception:
            log.debug("could not refresh meta of %s", job.id, exc_info=True)
        settle_lost_job(self.store, job, describe_exit(ret_val))

    def _on_exception(self, job: Job, exc_type: Any, exc_value: Any, tb: Any) -> bool:
        # Called in the horse for every exception (the job settled those itself), and by
        # registry maintenance for jobs of workers that died: those are settled here.
        if exc_type is AbandonedJobError:
            settle_lost_job(self.store, job, "the worker running the training died")
        return True


def build_worker(
    settings: WorkerSettings, store: ModelStore, name: str | None = None
) -> TrainingWorker:
    """Connect to Redis and build the training worker (fails fast if Redis is down)."""
    connection = Redis.from_url(settings.redis_url)
    connection.ping()
    return TrainingWorker(settings, connection=connection, store=store, name=name)
