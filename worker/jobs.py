"""RQ job functions. The service enqueues ``"worker.jobs.train_style"`` by dotted path.

One job trains one style (see "The training job" in ``docs/ARCHITECTURE.md``):

1. validate the parameters, take the style's training lease, mark the style ``training``;
2. load the style image from the store and train on ``STYLIZE_CONTENT_DIR`` with
   :func:`stylenet.train`, checkpointing into ``store.scratch_dir(style_id)`` so that a
   retried or requeued job resumes instead of restarting;
3. report progress (store + ``job.meta``) and previews through :class:`ProgressReporter`;
4. publish float16 weights with their metrics (the store makes the style ``ready``).

Every way out leaves the style in a final or waiting state, never stuck in ``training``:
``ready``; ``failed`` with a readable reason (final errors, or retries exhausted);
``queued`` when RQ will retry the job; or ``canceled`` as the user asked. Scratch is
removed when the style reaches ``ready``, ``failed`` or ``canceled``. Deaths the job
cannot see (``kill -9``, a dead worker) are settled by :mod:`worker.recovery`; what no
process could write (a store refusing writes, a lost lease) is repaired by
:mod:`worker.reconcile`.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image
from redis import Redis
from rq import get_current_job
from torch import nn

from model_store import ModelStore, Status, StyleRecord, open_store
from stylenet import ImageError, TrainParams, TrainResult, generator_to_bytes, train
from stylenet.checkpoint import fingerprint
from stylenet.data import find_images, open_image, split_content
from stylenet.step import StepOptions
from stylenet.warmstart import InitChoice

from . import speed
from .device import resolve_device
from .errors import (
    Canceled,
    Interrupted,
    LockLost,
    StyleBusy,
    TooFewContentPhotos,
    TrainingFailed,
    describe_failure,
    readable,
)
from .lock import StyleLock, holder, lock_token
from .progress import PREVIEW_MAX_SIDE, ProgressReporter, guard_store_write
from .recovery import JOB_FUNCTION, clear_scratch
from .scoring import enqueue_score, score_published, score_version
from .settings import WorkerSettings
from .starts import resolve_init

log = logging.getLogger(__name__)

#: Written next to the checkpoint: a checkpoint made with other parameters is discarded.
PARAMS_MARKER = "params.json"


def train_style(style_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Train, checkpoint and publish the generator of one style (an RQ job).

    Args:
        style_id: the style, created in the model store by the service.
        params: ``stylenet.TrainParams.to_dict()``; validated again here.

    Returns:
        ``{"status": "ready", "version": n, ...}``, or ``{"status": "canceled"}``.

    Raises:
        TrainingFailed: (or the original error) when the style was marked ``failed``;
            retries are switched off for final errors, so RQ records the job as failed.
        Exception: a retryable error; the style is ``queued`` and RQ retries the job.
    """
    settings = WorkerSettings()
    return TrainingRun(style_id, settings, open_store(settings.model_store)).run(params)


def preview_image(content_dir: Path, holdout: int) -> Image.Image | None:
    """Return the fixed content image previews are made of (a held-out one when possible)."""
    try:
        paths = find_images(content_dir)
    except Exception:  # training reports the content problem with a better message
        return None
    split = split_content(paths, holdout)
    for path in [*split.held, *split.train]:
        try:
            image = open_image(path)
        except ImageError:
            continue
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
        return image
    return None


def _all_finite(metrics: dict[str, Any]) -> bool:
    values = [*metrics.get("holdout_loss", {}).values()]
    values += [*metrics.get("final_train_loss", {}).values()]
    return all(math.isfinite(v) for v in values)


class TrainingRun:
    """One attempt at training one style inside a work horse."""

    def __init__(self, style_id: str, settings: WorkerSettings, store: ModelStore) -> None:
        """Bind the attempt to its style, settings and store; the RQ job is looked up."""
        self.style_id, self.settings, self.store = style_id, settings, store
        self.job = get_current_job()
        self.device = ""
        self._started = time.monotonic()
        self._parent_pid = os.getppid()
        self._stop_reason: str | None = None
        self._lock: StyleLock | None = None
        # RQ counts retries down, not attempts up: count them in job.meta, which RQ keeps
        # when it requeues the job (the killed-horse handler refreshes it first). Meta of
        # an earlier job with the same id (a retrain) is not ours: RQ leaves it in place.
        previous = 0
        if self.job is not None:
            if self.job.meta.get("run") != self._job_key():
                self.job.meta.clear()
            previous = int(self.job.meta.get("attempt", 0))
        self._attempt_number = previous + 1

    # --- the attempt ---------------------------------------------------------------------

    def run(self, params: dict[str, Any]) -> dict[str, Any]:
        """Run the attempt and settle the style's status whatever happens."""
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if in_main else None
        try:
            self._set_meta(run=self._job_key(), attempt=self._attempt_number, pid=os.getpid())
            train_params = TrainParams.from_dict(dict(params))
            self._acquire_lock()
            done = self._published_by_this_job()
            if done is not None:
                return done
            guard_store_write(
                self.style_id,
                lambda: self.store.update(self.style_id, status=Status.TRAINING),
            )
            self.device = str(resolve_device(self.settings.device))
            self._set_meta(device=self.device)
            result = self._train(train_params)
            return self._publish(train_params, result)
        except Canceled as exc:
            log.info("style %s: stopping: %s", self.style_id, exc)
            self._clear_scratch()
            return {"status": "canceled", "style_id": self.style_id}
        except LockLost:
            log.error("style %s: another job took over the training; stopping", self.style_id)
            self._disable_retries()
            raise
        except Exception as exc:
            self._settle_failure(exc)
            raise
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
            if self._lock is not None:
                self._lock.release()

    def _job_key(self) -> dict[str, str] | None:
        # Identifies this enqueue across its retries (a retrain is a new job: new created_at).
        if self.job is None or self.job.created_at is None:
            return None
        return {"id": self.job.id, "created_at": self.job.created_at.isoformat()}

    def _published_by_this_job(self) -> dict[str, Any] | None:
        """Return the result if another run of this very job already published it.

        RQ may run a job twice (it requeues the job of a worker it thinks dead while
        that worker still trains); the lease serializes the runs, and this check keeps
        the second from training again once the first has published.
        """
        rec = guard_store_write(self.style_id, lambda: self.store.get(self.style_id))
        if rec.status is Status.CANCELED:
            raise Canceled(f"style {self.style_id} was canceled")
        info, key = rec.version_info(), self._job_key()
        if rec.status in (Status.QUEUED, Status.TRAINING):
            return None  # a run to do (a retrain starts queued too)
        if rec.status is not Status.READY or info is None or key is None:
            return self._stale(rec)
        if info.metadata.get("job") != key:
            return self._stale(rec)
        log.info("style %s: already published by another run of this job", self.style_id)
        self._clear_scratch()
        if (info.metrics.get("score") or {}).get("status") == "scoring":
            try:  # the first run died before the score was settled: finish it
                score_published(self.store, self.settings, self.style_id, info.version)
            except Exception as exc:
                log.warning("style %s: cannot score v%d: %s", self.style_id, info.version, exc)
        return {"status": "ready", "style_id": self.style_id, "version": info.version}

    def _stale(self, rec: StyleRecord) -> dict[str, Any]:
        """Return without training: the style was settled without this job.

        Every run starts from ``queued`` (a create, a retrain, a retry, a repair). A job
        that finds its style ``ready`` or ``failed`` by another hand is stale: e.g. the
        reconciler enqueued a demo style that the API then installed from its bundled
        weights, or a job re-enqueued after Redis lost its data ran after the original.
        Training it would redo hours of work the style does not need.
        """
        log.warning(
            "style %s is %s, settled without this job: nothing to train", rec.id, rec.status
        )
        return {"status": str(rec.status), "style_id": rec.id, "trained": False}

    def _enqueue_score(self, version: int) -> bool:
        """Queue the version's score behind waiting trainings; False where it cannot be."""
        if self.job is None:
            return False
        try:
            enqueue_score(self.job.connection, self.job.origin, self.style_id, version)
        except Exception as exc:  # Redis away: score here rather than never
            log.warning("style %s: cannot queue the score, scoring now: %s", self.style_id, exc)
            return False
        return True

    def _score(
        self, version: int, generator: nn.Module, params: TrainParams, metrics: dict[str, Any]
    ) -> None:
        # The style serves already; a training queued behind this job waits for the score
        # (minutes on a CPU at the fixed reference, seconds on a GPU).
        score_version(
            self.store,
            self.style_id,
            version,
            generator,
            params,
            metrics,
            content_dir=self.settings.content_dir,
            device=self.device,
            cache_dir=self.settings.loss_cache_dir(),
        )

    def _train(self, params: TrainParams) -> TrainResult:
        if self.settings.checkpoint_every is not None:
            # A free field: it changes how often state is saved, not the result.
            params = replace(params, checkpoint_every=self.settings.checkpoint_every)
        # A style trained on a handful of photos generalizes badly: refuse it up front.
        found = len(find_images(self.settings.content_dir))
        if found < self.settings.min_content_photos:
            raise TooFewContentPhotos(
                found, self.settings.content_dir, self.settings.min_content_photos
            )
        image = self._style_image()
        choice = self._init(params)
        reporter = ProgressReporter(
            self.store,
            self.style_id,
            self.job,
            interval_s=self.settings.progress_interval_s,
            preview_every=self.settings.preview_every,
            preview_image=preview_image(self.settings.content_dir, params.holdout),
            check=self._check_alive,
        )
        self.reporter = reporter
        log.info("style %s: training on %s", self.style_id, self.device)
        return train(
            image,
            self.settings.content_dir,
            params,
            on_progress=reporter,
            checkpoint_dir=self._prepare_scratch(params),
            device=self.device,
            cache_dir=self.settings.loss_cache_dir(),
            options=StepOptions.for_device(self.device, cpu_dtype=self.settings.cpu_dtype),
            # Slow devices report between progress_every iterations too (the reporter
            # throttles writes to the same interval).
            progress_interval_s=self.settings.progress_interval_s,
            init_state=choice.state,
            init_info=choice.info,
            init_norms=choice.norms,
        )

    def _init(self, params: TrainParams) -> InitChoice:
        """Where this run starts (a checkpoint found in scratch still wins over it)."""
        data = guard_store_write(self.style_id, lambda: self.store.style_image(self.style_id))
        choice = resolve_init(
            self.store,
            self.style_id,
            params,
            data,
            device=self.device,
            cache_dir=self.settings.loss_cache_dir(),
        )
        log.info("style %s: starts from %s", self.style_id, choice.info)
        return choice

    def _publish(self, params: TrainParams, result: TrainResult) -> dict[str, Any]:
        metrics = {
            **result.metrics,
            "attempt": self._attempt(),
            "worker": os.environ.get("RQ_WORKER_ID") or socket.gethostname(),
        }
        pending = bool(
            self.settings.score and params.yardstick_steps and metrics.get("holdout_images")
        )
        if pending:
            metrics["score"] = {"status": "scoring"}
        if not _all_finite(metrics):
            raise TrainingFailed(
                "training diverged (the loss became NaN or infinite): "
                "try a lower lr or style_weight"
            )
        data = generator_to_bytes(
            result.generator,
            train_params=params.to_dict(),
            lossnet=result.lossnet,
            metrics=metrics,
            dtype="float16",
        )
        self.reporter.preview(result.generator, params.iterations)
        metadata = {
            "format": "stylize-generator",
            "dtype": "float16",
            "config": result.generator.config.to_dict(),
            "train_params": params.to_dict(),
            "lossnet": result.lossnet,
            "job": self._job_key(),
        }
        version = guard_store_write(
            self.style_id,
            lambda: self.store.publish(
                self.style_id,
                data,
                metadata=metadata,
                metrics=metrics,
                keep_versions=self.settings.keep_versions,
            ),
        )
        self._clear_scratch()
        log.info("style %s: published version %d", self.style_id, version.version)
        self._record_speed(params, metrics)
        if pending and not self._enqueue_score(version.version):
            self._score(version.version, result.generator, params, metrics)
        return {"status": "ready", "style_id": self.style_id, "version": version.version}

    def _record_speed(self, params: TrainParams, metrics: dict[str, Any]) -> None:
        """Refine this device's published training speed with what this run took."""
        if self.job is None:
            return
        try:
            connection: Redis = self.job.connection
            previous = speed.read(connection, self.settings.device)
            total_s = time.monotonic() - self._started
            refined = speed.refine(previous, params, metrics, total_s)
            if refined is not None:
                speed.publish(connection, self.settings.device, refined)
        except Exception:  # an estimate is a nicety: never fail a published training
            log.warning(
                "style %s: could not record the training speed", self.style_id, exc_info=True
            )

    # --- failure handling ----------------------------------------------------------------

    def _settle_failure(self, exc: Exception) -> None:
        reason, retryable = describe_failure(exc, self.device)
        if isinstance(exc, Interrupted) and not exc.consumes_retry and self.job is not None:
            # A deliberate shutdown is no failure of the job: give back the retry RQ takes.
            self.job.retries_left = (self.job.retries_left or 0) + 1
        retries_left = (self.job.retries_left or 0) if self.job is not None else 0
        if retryable and retries_left > 0:
            log.warning("style %s: attempt stopped (%s); RQ requeues it", self.style_id, reason)
            self._write_status(Status.QUEUED, None)
            return
        if retryable and self._attempt() > 1:
            reason = f"{reason} (gave up after {self._attempt()} attempts)"
        log.error("style %s: training failed: %s", self.style_id, reason)
        self._disable_retries()
        if self._write_status(Status.FAILED, reason):
            self._clear_scratch()
        # Else the store refused the write: the style still reads queued/training, and
        # the reconciler will run it again, resuming from the checkpoint kept here.

    def _write_status(self, status: Status, error: str | None) -> bool:
        try:
            self.store.update(self.style_id, status=status, error=error)
        except Exception as exc:  # canceled, deleted, or the store is down: nothing to add
            log.warning("style %s: could not mark it %s: %s", self.style_id, status, exc)
            return False
        return True

    def _disable_retries(self) -> None:
        if self.job is not None:
            self.job.retries_left = 0  # read by RQ's failure handling in this process

    # --- helpers -------------------------------------------------------------------------

    def _attempt(self) -> int:
        return self._attempt_number

    def _set_meta(self, **values: Any) -> None:
        if self.job is not None:
            self.job.meta.update(style_id=self.style_id, **values)
            self.job.save_meta()

    def _acquire_lock(self) -> None:
        if self.job is not None:
            connection: Redis = self.job.connection
            token = lock_token(os.environ.get("RQ_WORKER_ID", socket.gethostname()), self.job.id)
        else:
            connection = Redis.from_url(self.settings.redis_url)
            token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        lock = StyleLock(connection, self.style_id, token, self.settings.lock_ttl_s)
        # Wait out a dead holder's lease; a live orphan gives it up at its next report.
        acquired = lock.acquire(wait_s=self.settings.lock_ttl_s + 5)
        # Another run of this very job (RQ took its worker for dead and requeued it) holds a
        # live lease: wait for it as long as it lives. Giving up would spend this job's
        # retries and fail the style under a healthy run; once it ends, this run finds the
        # version published (and ends), or takes over from its checkpoint.
        while not acquired and self._held_by_this_job(connection):
            log.info("style %s: another run of this job is training; waiting", self.style_id)
            acquired = lock.acquire(wait_s=self.settings.lock_ttl_s + 5)
        if not acquired:
            raise StyleBusy(f"another job is already training style {self.style_id}")
        self._lock = lock

    def _held_by_this_job(self, connection: Redis) -> bool:
        """Whether the style's lease is held by a run of this job on another worker."""
        token = holder(connection, self.style_id)
        return self.job is not None and token is not None and token.endswith(f":{self.job.id}")

    def _check_alive(self) -> None:
        if self._lock is not None and self._lock.lost.is_set():
            raise LockLost(self.style_id)
        if self._stop_reason is not None:
            raise Interrupted(self._stop_reason, consumes_retry=False)
        if self.job is not None and os.getppid() != self._parent_pid:
            # The worker that forked us died: RQ cannot record our result reliably and
            # will requeue the job anyway. Stop at once; the checkpoint stays.
            raise Interrupted("the worker process died during training", consumes_retry=True)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Raised at the next progress report, where a checkpoint-consistent stop is safe.
        self._stop_reason = "the worker was shut down during training"

    def _style_image(self) -> Image.Image:
        data = guard_store_write(self.style_id, lambda: self.store.style_image(self.style_id))
        try:
            return open_image(io.BytesIO(data))
        except ImageError as exc:
            cause = readable(str(exc.__cause__ or exc)) or type(exc.__cause__).__name__
            raise TrainingFailed(
                f"the style image cannot be decoded ({cause}): upload a JPEG, PNG or WebP image"
            ) from exc

    def _prepare_scratch(self, params: TrainParams) -> Path:
        scratch = self.store.scratch_dir(self.style_id)
        marker = scratch / PARAMS_MARKER
        wanted = fingerprint(params)  # the same rule stylenet's own resume check applies
        try:
            current = marker.read_text()
        except OSError:
            current = None
        if current != wanted:
            if current is not None or any(scratch.iterdir()):
                log.info("style %s: discarding a checkpoint of other parameters", self.style_id)
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True, exist_ok=True)
            marker.write_text(wanted)
        return scratch

    def _clear_scratch(self) -> None:
        clear_scratch(self.store, self.style_id)


__all__ = ["JOB_FUNCTION", "TrainingRun", "preview_image", "resolve_device", "train_style"]
