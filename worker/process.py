"""The RQ worker that runs training jobs: one job at a time, each in a forked work horse.

:class:`TrainingWorker` is RQ's forking ``Worker`` with the JSON serializer and these
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
  Several workers may do it at once: deleting an unreferenced file twice is harmless;
* the reconciler (:mod:`worker.reconcile`) runs at start and every
  ``reconcile_interval_s``, also while a job runs (from the job's heartbeats, every
  ``TICK_S``), so styles whose jobs Redis lost are enqueued again during a long training;
* every heartbeat, idle or busy, puts back what Redis lost of this worker
  (:mod:`worker.presence`: its RQ registration, its device's training speed);
* Redis outages are waited out with back-off instead of ending the worker: RQ's own
  loop already retries a failed dequeue; the heartbeats, state writes and maintenance
  around it are guarded here, and :class:`TrainingScheduler` (RQ's scheduler, which
  moves delayed retries to the queue) survives them too and stops when its worker dies;
* a scheduler lock left by a dead worker's scheduler (no heartbeat for
  ``SCHEDULER_STALE_S``) is released, so delayed retries wait seconds, not the lock's
  TTL.

The worker blocks on the queue for ``TICK_S`` at most (RQ's ``dequeue_timeout``, from
``worker_ttl``), so these periodic checks run while it is idle too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import AbandonedJobError, StopRequested
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import utcparse

from model_store import ModelStore

from . import lock, videos
from .presence import Presence
from .reconcile import Reconciler, run_safely
from .recovery import clean_up_after, describe_exit, settle_lost_job, style_of
from .settings import WorkerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest block on the queue, so periodic checks run while idle (RQ: worker_ttl - 15).
TICK_S = 5
#: A scheduler silent this long is dead (it heartbeats every second).
SCHEDULER_STALE_S = 10.0


def _guarded(what: str, call: Callable[[], T]) -> T | None:
    """Run a Redis call whose failure must not end the worker; None when Redis failed."""
    try:
        return call()
    except RedisError as exc:
        log.warning("Redis unavailable (%s): %s; going on", what, exc)
        return None


class TrainingScheduler(RQScheduler):
    """RQ's scheduler process, made to wait out Redis outages and to die with its worker.

    RQ's own ``work`` loop ends the scheduler at the first Redis error (a worker only
    restarts it at its next maintenance), and a scheduler whose worker was killed lives
    on as an orphan holding the scheduler lock. Here the loop backs off on Redis errors
    and stops (releasing the lock) as soon as its parent, the worker, is gone.
    """

    retry_max_s = 30.0

    def work(self) -> None:
        """Move due scheduled jobs to their queues every ``interval`` until stopped."""
        parent = os.getppid()  # runs in the forked child: the parent is the worker
        self._install_signal_handlers()
        wait = 1.0
        registered = False
        while True:
            if self._stop_requested or os.getppid() != parent:
                with contextlib.suppress(RedisError):
                    self.stop()
                return
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                wait = 1.0
            except RedisError as exc:
                self.log.warning("scheduler: Redis unavailable (%s); retrying in %.0f s", exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, self.retry_max_s)
                continue
            time.sleep(self.interval)


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
        self._next_reconcile = 0.0  # likewise: a pass runs when the worker starts
        self._next_scheduler_check = 0.0
        super().__init__(
            # Clip jobs first: minutes each, and someone is watching their progress.
            [settings.videos_queue, settings.training_queue],
            name=name or settings.worker_name,
            connection=connection,
            serializer=JSONSerializer,
            exception_handlers=[self._on_exception],
            work_horse_killed_handler=self._on_horse_killed,
            maintenance_interval=settings.maintenance_interval_s,
            worker_ttl=TICK_S + 15,
            # The parent's checks during a job run between these waits (RQ: 30 s).
            job_monitoring_interval=TICK_S,
        )
        self.max_connection_wait_time = settings.redis_retry_max_s
        self.reconciler = Reconciler(store, connection, settings, owner=self.name)
        self.presence = Presence(self, settings.device)

    # --- periodic work -------------------------------------------------------------------

    @property
    def should_run_maintenance_tasks(self) -> bool:
        """RQ's maintenance, the reconciler or the scheduler check is due."""
        now = time.monotonic()
        return (
            super().should_run_maintenance_tasks
            or now >= self._next_scheduler_check
            or (self.settings.reconcile_interval_s > 0 and now >= self._next_reconcile)
        )

    def run_maintenance_tasks(self) -> None:
        """Whichever is due: RQ's maintenance, store gc, scheduler check, reconciler."""
        if super().should_run_maintenance_tasks:
            _guarded("maintenance", super().run_maintenance_tasks)
            self._collect_store_garbage()
        now = time.monotonic()
        if now >= self._next_scheduler_check:
            self._next_scheduler_check = now + TICK_S
            _guarded("scheduler check", self._check_scheduler)
        self._reconcile_if_due()

    def _reconcile_if_due(self) -> None:
        interval = self.settings.reconcile_interval_s
        now = time.monotonic()
        if interval > 0 and now >= self._next_reconcile:
            self._next_reconcile = now + interval
            run_safely(self.reconciler)

    def _collect_store_garbage(self) -> None:
        interval = self.settings.store_gc_interval_s
        now = time.monotonic()
        if interval <= 0 or now < self._next_store_gc:
            return
        self._next_store_gc = now + interval
        try:
            removed = self.store.gc()
        except StopRequested:  # SIGTERM while idle: RQ's way out of its loop
            raise
        except Exception:  # a flaky store must not stop the worker; next time, then
            log.warning("model store garbage collection failed", exc_info=True)
            return
        if removed:
            log.info("model store gc removed %d unreferenced files", len(removed))
        swept = videos.sweep(self.connection, self.store)
        if swept:
            log.info("removed the files of %d expired clip jobs", len(swept))

    # --- the scheduler -------------------------------------------------------------------

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = "",
        log_format: str = "",
    ) -> None:
        """RQ's ``_start_scheduler`` with :class:`TrainingScheduler`."""
        kwargs = {"date_format": date_format} if date_format else {}
        if log_format:
            kwargs["log_format"] = log_format
        scheduler = TrainingScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            serializer=self.serializer,
            **kwargs,
        )
        scheduler.retry_max_s = self.settings.redis_retry_max_s
        self.scheduler = scheduler
        self._release_stale_scheduler_locks()
        scheduler.acquire_locks()
        if scheduler.acquired_locks:
            if burst:
                try:
                    scheduler.register_birth()
                    scheduler.enqueue_scheduled_jobs()
                finally:
                    scheduler.release_locks()
                    scheduler.register_death()
            else:
                scheduler.start()

    def _check_scheduler(self) -> None:
        """Start our scheduler if no live one holds the lock (a dead one's is released)."""
        scheduler = self.scheduler
        if scheduler is None or self._stop_requested:
            return  # a warm shutdown stopped it on purpose
        if scheduler._process is not None and scheduler._process.is_alive():
            return
        self._release_stale_scheduler_locks()
        scheduler.acquire_locks(auto_start=True)

    def unsubscribe(self) -> None:
        """RQ's unsubscribe from the command channel, without its wait of up to 60 s.

        RQ unsubscribes, then stops the listening thread and joins it (redis-py 8 joins
        with no timeout). A thread that read the unsubscribe reply before the stop waits
        60 s for a subscription that never comes, and the worker's exit with it. Here the
        thread is told to stop first, so the reply ends it.
        """
        thread = self.pubsub_thread
        if not thread:
            return
        self.log.info("Worker %s: unsubscribing from %s", self.name, self.pubsub_channel_name)
        try:
            thread.stop(timeout=0)  # clears its running flag; the join is bounded below
        except TypeError:  # redis-py before 8: stop() only clears the flag
            thread.stop()
        with contextlib.suppress(RedisError):
            self.pubsub.unsubscribe()
        thread.join(timeout=2)
        self.pubsub.close()

    def stop_scheduler(self) -> None:
        """Stop the scheduler process: SIGTERM, then SIGKILL if it has not ended in 5 s.

        RQ waits forever; a scheduler forked a moment before the SIGTERM may not have its
        own handler yet (it inherited the worker's), and must not hold the worker's exit.
        """
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or process.pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(process.pid, signal.SIGTERM)
        process.join(5)
        if process.is_alive():
            log.warning("scheduler %d did not stop; killing it", process.pid)
            with contextlib.suppress(OSError):
                os.kill(process.pid, signal.SIGKILL)
            process.join()

    def _release_stale_scheduler_locks(self) -> None:
        scheduler = self.scheduler
        if scheduler is None:
            return
        for queue_name in scheduler._queue_names:
            key = scheduler.get_locking_key(queue_name)
            raw = self.connection.get(key)
            if raw is None:
                continue
            holder = raw.decode() if isinstance(raw, bytes) else str(raw)
            if holder == scheduler.name:
                continue
            beat = self.connection.hget(SCHEDULER_KEY_TEMPLATE % holder, "last_heartbeat")
            if beat is not None:
                age = (datetime.now(UTC) - utcparse(beat.decode())).total_seconds()
                if age < SCHEDULER_STALE_S:
                    continue  # a live scheduler elsewhere
            if lock.release_key(self.connection, key, holder):
                log.warning(
                    "released the scheduler lock of %s held by dead scheduler %s",
                    queue_name,
                    holder,
                )

    # --- Redis outages: wait, do not quit --------------------------------------------------

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; a Redis failure is logged (the dequeue loop backs off)."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline=pipeline)
        else:
            parent = super()
            _guarded("heartbeat", lambda: parent.heartbeat(timeout))
            self.presence.restore_safely()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """RQ's set_state; a Redis failure is logged, the state kept locally."""
        if pipeline is not None:
            super().set_state(state, pipeline=pipeline)
        else:
            self._state = state
            parent = super()
            _guarded("state", lambda: parent.set_state(state))

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's ``rq suspend`` check; skipped while Redis is down."""
        parent = super()
        _guarded("suspension check", lambda: parent.check_for_suspension(burst))

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        """RQ's job heartbeats, then the checks that must go on during a long job.

        A training goes on through a Redis outage; what Redis lost of this worker is put
        back, and the reconciler runs when due (a training may last hours).
        """
        parent = super()
        _guarded("job heartbeat", lambda: parent.maintain_heartbeats(job, execution))
        self.presence.restore_safely()
        self._reconcile_if_due()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job`` in a work horse, then release what a killed horse left behind."""
        self.reconciler.busy_style = style_of(job)
        try:
            super().execute_job(job, queue)
        finally:
            self.reconciler.busy_style = None
            videos.clean_up_after(self.connection, self.store, job)
            style_id = style_of(job)
            if style_id is not None:
                token = lock.lock_token(self.name, job.id)
                _guarded("lease release", lambda: lock.release(self.connection, style_id, token))
                clean_up_after(self.store, job)

    def _shutdown(self) -> None:
        """Record the stop request even when idle (RQ then only raises StopRequested).

        ``python -m worker`` reads it to tell a requested stop from a loop that ended on
        an error, which it starts again.
        """
        self._stop_requested = True
        super()._shutdown()

    def handle_warm_shutdown_request(self) -> None:
        """Ask a running horse to stop at its next report (it requeues itself)."""
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            log.info("asking work horse %d to checkpoint-stop and requeue", self.horse_pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, signal.SIGTERM)  # the horse only, not its loaders

    def _on_horse_killed(self, job: Job, retpid: Any, ret_val: Any, rusage: Any) -> None:
        videos.settle_lost(self.connection, job, describe_exit(ret_val))
        style_id = style_of(job)
        if style_id is None:
            return
        # Let the retry take the lease at once instead of waiting for it to expire.
        token = lock.lock_token(self.name, job.id)
        _guarded("lease release", lambda: lock.release(self.connection, style_id, token))
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
            videos.settle_lost(self.connection, job, "the worker running the job died")
        return True


def build_worker(
    settings: WorkerSettings, store: ModelStore, name: str | None = None
) -> TrainingWorker:
    """Connect to Redis and build the training worker (waits, with back-off, for Redis)."""
    connection = Redis.from_url(settings.redis_url, health_check_interval=30)
    wait_for_redis(connection, settings.redis_retry_max_s)
    return TrainingWorker(settings, connection=connection, store=store, name=name)


def wait_for_redis(connection: Redis, max_wait_s: float) -> None:
    """Return once Redis answers; log and retry (1 s, doubling to ``max_wait_s``) until then."""
    wait = 1.0
    while True:
        try:
            connection.ping()
            return
        except RedisError as exc:
            log.warning("Redis unavailable (%s); retrying in %.0f s", exc, wait)
        time.sleep(wait)
        wait = min(wait * 2, max_wait_s)
