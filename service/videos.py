"""The producer side of clip jobs (``POST /videos``; docs/VIDEO.md, "The job path").

An upload is checked on its header (limits: 413 before anything is stored), stored in
the store's clip area (:mod:`model_store.clips`), its state hash written (``queued``)
and ``"worker.videos.stylize_video"(clip_id, spec)`` enqueued by dotted path with the
JSON serializer on ``videos_queue``, which the training worker serves before its
training queue. The worker writes ``running``, ``done``/``total`` frames, then ``done``
or ``failed`` with the reason into the same hash; this module reads it for
``GET /videos/{id}`` and its event stream. The service imports no ``worker`` code.

Expiry: the hash lives ``video_ttl_s`` after its last write (the worker renews it on
each), and the files follow it: a folder whose hash is gone is removed by the next
upload's sweep here or the worker's periodic one. ``video_max_waiting`` bounds how many
clips have files at once (429 ``videos_full``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from model_store import ModelStore
from model_store.clips import (
    CANCELED,
    DONE,
    QUEUED,
    RUNNING,
    TERMINAL,
    VIDEO_FUNCTION,
    is_valid_clip_id,
    job_id,
    new_clip_id,
    state_key,
)
from service.errors import Conflict, NotFound, Overloaded, Unavailable
from service.settings import ServiceSettings
from stylenet.video import OUTPUT_FORMATS, output_size
from stylenet.video_job import ClipJobSpec
from stylenet.video_read import ClipReader, VideoLimits, VideoTooLarge

log = logging.getLogger(__name__)

#: KEYS: the state hash. Marks a queued or running job canceled; returns its old state.
CANCEL_LUA = """
local s = redis.call('HGET', KEYS[1], 'state')
if s == 'queued' or s == 'running' then redis.call('HSET', KEYS[1], 'state', 'canceled') end
return s
"""
_NUMBERS = ("done", "total", "frames", "width", "height", "version")
_TIMES = ("created_at", "started_at", "finished_at")


def _unavailable(exc: RedisError) -> Unavailable:
    return Unavailable(
        f"the video queue is unavailable: {exc}", code="queue_unavailable", retry_after=5
    )


@dataclass(frozen=True)
class Probed:
    """What an upload's header said: its family and declared frame count."""

    kind: str
    frames: int | None
    width: int
    height: int


def probe(data: bytes, limits: VideoLimits, max_side: int, output: str | None) -> Probed:
    """Check a clip's header against ``limits`` without decoding a frame.

    The declared frame count times the output size is the work (``total_pixels``);
    decoding counts again in the worker (headers can lie).

    Raises:
        VideoTooLarge: over a limit (413). VideoError: not a clip this code reads.
    """
    with ClipReader(data, limits) as reader:
        info = reader.info
    fmt = OUTPUT_FORMATS[output or info.kind]
    width, height = output_size(info.width, info.height, max_side, fmt)
    if info.frames is not None and info.frames * width * height > limits.max_total_pixels:
        total = info.frames * width * height
        raise VideoTooLarge(
            "total_pixels",
            limits.max_total_pixels,
            total,
            f"pixels to stylize (declared): {total:g}, over the limit of "
            f"{limits.max_total_pixels:g}",
        )
    return Probed(info.kind, info.frames, width, height)


def document(clip_id: str, raw: dict[bytes, bytes]) -> dict[str, Any]:
    """Return the public document of a clip job from its state hash."""
    state = {k.decode(): v.decode() for k, v in raw.items()}
    values: dict[str, Any] = {}
    for name in _NUMBERS:
        text = state.get(name, "")
        values[name] = int(text) if text.isdigit() else None
    for name in _TIMES:
        text = state.get(name, "")
        values[name] = float(text) if text else None
    done, total = values["done"] or 0, values["total"]
    status = state.get("state", QUEUED)
    doc: dict[str, Any] = {
        "id": clip_id,
        "state": status,
        "style_id": state.get("style_id"),
        "version": values["version"],
        "progress": {
            "done": done,
            "total": total,
            "fraction": round(min(1.0, done / total), 4) if total else None,
        },
        "error": None,
        "result": None,
        "created_at": values["created_at"],
        "started_at": values["started_at"],
        "finished_at": values["finished_at"],
        "worker": state.get("worker") or None,  # host:pid of the work horse
    }
    if state.get("error"):
        error: dict[str, Any] = {"code": state.get("code") or "failed", "message": state["error"]}
        for name in ("field", "limit", "actual"):
            if state.get(name):
                error[name] = state[name]
        doc["error"] = error
    if status == DONE:
        doc["result"] = {
            "url": f"/videos/{clip_id}/result",
            "media_type": state.get("media_type"),
            "format": state.get("format"),
            "frames": values["frames"],
            "width": values["width"],
            "height": values["height"],
            "audio": state.get("audio"),
        }
    return doc


class VideoJobs:
    """Stores uploads, enqueues clip jobs, reads their state, cancels and deletes them."""

    def __init__(self, redis: Redis, store: ModelStore, settings: ServiceSettings) -> None:
        """Use ``redis`` for the queue and state, ``store`` for the files."""
        self.redis, self.store, self.settings = redis, store, settings
        self.queue = Queue(settings.videos_queue, connection=redis, serializer=JSONSerializer)
        self._cancel = redis.register_script(CANCEL_LUA)

    def limits(self) -> VideoLimits:
        """Return what a clip job may cost."""
        s = self.settings
        return VideoLimits(
            max_seconds=s.video_max_seconds,
            max_frames=s.video_max_frames,
            max_frame_pixels=s.clip_max_frame_pixels,
            max_total_pixels=s.video_max_total_pixels,
        )

    def _alive(self, clip_id: str) -> bool:
        return bool(self.redis.exists(state_key(clip_id)))

    def submit(
        self, data: bytes, probed: Probed, spec: ClipJobSpec, owner: str | None
    ) -> dict[str, Any]:
        """Store the upload, write its state, enqueue its job; return its document.

        Raises:
            Overloaded: ``video_max_waiting`` clips are stored (``videos_full``).
            Unavailable: Redis is down (nothing is left behind).
        """
        area = self.store.clips
        try:
            area.sweep(self._alive)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if area.count() >= self.settings.video_max_waiting:
            raise Overloaded(
                f"{self.settings.video_max_waiting} clip jobs are stored; retry when one "
                "expires or delete one",
                code="videos_full",
                retry_after=60,
            )
        clip_id = new_clip_id()
        area.put_input(clip_id, data, f".{probed.kind}")
        key = state_key(clip_id)
        state = {
            "state": QUEUED,
            "created_at": f"{time.time():.3f}",
            "style_id": spec.style_id,
            "version": str(spec.version),
            "owner": owner or "",
            "done": "0",
            "total": "" if probed.frames is None else str(probed.frames),
        }
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=state)
                pipe.expire(key, spec.ttl_s)
                pipe.execute()
            self.queue.enqueue(
                VIDEO_FUNCTION,
                clip_id,
                spec.to_dict(),
                job_id=job_id(clip_id),
                job_timeout=self.settings.video_job_timeout_s,
                result_ttl=spec.ttl_s,
                failure_ttl=spec.ttl_s,
                description=f"stylize clip {clip_id} with {spec.style_id} v{spec.version}",
            )
        except RedisError as exc:
            area.delete(clip_id)
            with contextlib.suppress(RedisError):  # else it expires
                self.redis.delete(key)
            raise _unavailable(exc) from exc
        return document(clip_id, {k.encode(): v.encode() for k, v in state.items()})

    def raw(self, clip_id: str) -> dict[bytes, bytes]:
        """Return the clip job's state hash.

        Raises:
            NotFound: no such clip job (never was, deleted, or expired).
            Unavailable: Redis is down.
        """
        if not is_valid_clip_id(clip_id):
            raise NotFound(f"no clip job {clip_id[:64]!r}", code="video_not_found")
        try:
            raw = self.redis.hgetall(state_key(clip_id))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        if not raw:
            raise NotFound(f"no clip job {clip_id!r} (deleted or expired)", code="video_not_found")
        return raw

    def get(self, clip_id: str) -> dict[str, Any]:
        """Return the clip job's document (see :func:`document`)."""
        return document(clip_id, self.raw(clip_id))

    def owner(self, clip_id: str) -> str | None:
        """Return the key id that submitted the clip (None without keys)."""
        return (self.raw(clip_id).get(b"owner") or b"").decode() or None

    def result(self, clip_id: str) -> tuple[Path, str]:
        """Return the finished result's path and media type.

        Raises:
            NotFound: no such job, or its result is gone. Conflict: not done yet.
        """
        doc = self.get(clip_id)
        if doc["state"] != DONE:
            raise Conflict(
                f"clip job {clip_id!r} is {doc['state']}",
                code="video_not_ready",
                state=doc["state"],
            )
        name = self.raw(clip_id).get(b"result", b"").decode()
        path = self.store.clips.folder(clip_id) / name
        if not name.startswith("result.") or not path.is_file():
            raise NotFound(f"the result of clip job {clip_id!r} is gone", code="video_not_found")
        return path, doc["result"]["media_type"] or "application/octet-stream"

    def cancel_or_delete(self, clip_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (kept, ``canceled``), or delete a finished one.

        Files go in both cases; the canceled state stays until it expires so that a
        follower sees ``canceled``, a finished job's state goes at once (404 after).
        """
        self.raw(clip_id)  # 404 first
        try:
            before = self._cancel(keys=[state_key(clip_id)])
        except RedisError as exc:
            raise _unavailable(exc) from exc
        before = before.decode() if isinstance(before, bytes) else before
        if before in (QUEUED, RUNNING):
            self._stop_job(clip_id)
            self.store.clips.delete(clip_id)
            return self.get(clip_id)
        try:
            self.redis.delete(state_key(clip_id))
            Job(job_id(clip_id), connection=self.redis).delete()
        except (RedisError, NoSuchJobError, InvalidJobOperation):
            log.debug("clip %s: job hash not deleted", clip_id, exc_info=True)
        self.store.clips.delete(clip_id)
        return {"id": clip_id, "state": "deleted", "was": before}

    def _stop_job(self, clip_id: str) -> None:
        """Dequeue or stop the RQ job, best effort: the worker also obeys the state."""
        try:
            job = Job.fetch(job_id(clip_id), connection=self.redis, serializer=JSONSerializer)
            status = job.get_status()
            if status == JobStatus.STARTED:
                send_stop_job_command(self.redis, job.id, serializer=JSONSerializer)
            elif status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
                job.cancel()
        except (NoSuchJobError, InvalidJobOperation, RedisError) as exc:
            log.info("clip %s: job not stopped (%s); the worker sees the state", clip_id, exc)


__all__ = ["CANCELED", "TERMINAL", "Probed", "VideoJobs", "document", "probe"]
