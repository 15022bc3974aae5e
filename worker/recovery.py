"""Settling training jobs whose work horse died where the job itself could not see it.

A job settles its style itself when it raises (see :mod:`worker.jobs`). Three deaths
bypass that, and RQ 3 handles each of them in another process:

* the work horse is killed (``kill -9``, the OOM killer, RQ's hard timeout): the parent
  worker calls its ``work_horse_killed_handler`` and then ``handle_job_failure``, which
  requeues the job if it has retries left (one retry is used);
* a stop-job command (cancel) kills the horse: RQ marks the job ``stopped``, never retries;
* the whole worker dies: its job stays "started" until its heartbeat expires (about
  65 s: the worker beats every 5 s with a 60 s margin); the next worker maintenance
  calls the exception handlers with ``AbandonedJobError`` and requeues the job if it
  has retries left.

:func:`settle_lost_job` mirrors RQ's decision in the style record: ``queued`` when a
retry is coming (it resumes from the checkpoint), else ``failed`` with the reason.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from typing import Any

from model_store import InvalidTransition, ModelStore, Status, StyleNotFound, is_valid_style_id

log = logging.getLogger(__name__)

JOB_FUNCTION = "worker.jobs.train_style"
_ACTIVE = (Status.QUEUED, Status.TRAINING)


def style_of(job: Any) -> str | None:
    """Return the style id a training job works on (None for any other job)."""
    try:
        if job.func_name != JOB_FUNCTION or not job.args:
            return None
        style_id = job.args[0]
    except Exception:  # an undeserializable job: not ours to settle
        return None
    return style_id if is_valid_style_id(style_id) else None


def describe_exit(ret_val: int | None) -> str:
    """Describe a work horse's wait status for a user ("killed by SIGKILL ...")."""
    if ret_val is not None and os.WIFSIGNALED(ret_val):
        sig = os.WTERMSIG(ret_val)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = ", e.g. by the out-of-memory killer" if sig == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}"
    if ret_val is not None and os.WIFEXITED(ret_val):
        return f"the training process exited with status {os.WEXITSTATUS(ret_val)}"
    return "the training process died"


def settle_lost_job(store: ModelStore, job: Any, reason: str) -> None:
    """Record in the style what RQ is about to do with a job that died unseen.

    Called with the job object RQ then requeues or fails. With retries left the style
    goes back to ``queued`` and the retry resumes from the checkpoint; without, it ends
    ``failed`` with ``reason`` and its scratch is removed. When the attempt had already
    settled the style (ready, failed, canceled, deleted), retrying would only redo
    work, so ``job.retries_left`` is zeroed and RQ records the job as failed.
    """
    style_id = style_of(job)
    if style_id is None:
        return
    try:
        status = store.get(style_id).status
    except StyleNotFound:
        status = None
    except Exception:
        log.exception("style %s: cannot read it to settle its lost job", style_id)
        return  # RQ still retries or fails the job; the retry settles the style
    if status not in _ACTIVE:
        job.retries_left = 0
        if status in (None, Status.CANCELED):
            clear_scratch(store, style_id)
        return
    try:
        if job.retries_left:
            left = job.retries_left
            log.warning("style %s: %s; requeued (%d retries left)", style_id, reason, left)
            store.update(style_id, status=Status.QUEUED)
            return
        attempts = int(job.meta.get("attempt", 1))
        if attempts > 1:
            reason = f"{reason} (gave up after {attempts} attempts)"
        log.error("style %s: training failed: %s", style_id, reason)
        store.update(style_id, status=Status.FAILED, error=reason)
    except (StyleNotFound, InvalidTransition):
        pass  # canceled or deleted meanwhile
    except Exception:
        log.exception("style %s: could not record the lost job", style_id)
        return
    clear_scratch(store, style_id)


def clear_scratch(store: ModelStore, style_id: str) -> None:
    """Remove the style's checkpoints."""
    shutil.rmtree(store.scratch_dir(style_id), ignore_errors=True)


def clean_up_after(store: ModelStore, job: Any) -> None:
    """After a job's horse exited: drop the scratch of a canceled or deleted style.

    A horse killed by a stop-job command (cancel) had no chance to clean up itself.
    """
    style_id = style_of(job)
    if style_id is None:
        return
    try:
        status = store.get(style_id).status
    except StyleNotFound:
        status = None
    except Exception:
        log.warning("style %s: cannot read its status after the job", style_id, exc_info=True)
        return
    if status in (None, Status.CANCELED):
        clear_scratch(store, style_id)
