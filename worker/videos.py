"""The clip job (``POST /videos``): stylize a stored upload, streaming, with progress.

The API stores the upload in the store's clip area (:mod:`model_store.clips`), writes
the job's state hash (``queued``) and enqueues ``"worker.videos.stylize_video"(clip_id,
spec)`` on the videos queue, which the training worker serves first. Here:

1. the spec is validated again (:class:`stylenet.video_job.ClipJobSpec`);
2. the state becomes ``running``; the style's version is loaded on the worker's device;
3. :func:`stylenet.video.stylize_clip` decodes the upload frame by frame, stylizes in
   batches and encodes into ``result.<ext>`` (a temporary name renamed when complete),
   reporting ``done``/``total`` frames after every batch;
4. the state becomes ``done`` with the result's format, size and frame count.

Every state write goes through :data:`UPDATE_LUA`, which refuses once the state is
``canceled`` or gone (``DELETE /videos/{id}``, or the TTL): the job then stops at its
next batch. Bad input (corrupt or unsupported clip, over a limit, a style deleted since)
ends ``failed`` with a readable ``error`` and the job returns normally: nothing to retry,
and nothing reaches the worker process. A horse killed (OOM killer) or a worker lost is
settled by :func:`settle_lost` from the worker's handlers (no retry: a clip that killed
one horse would kill the next).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job

from model_store import ModelStore, ModelStoreError, open_store
from model_store.clips import (
    CANCELED,
    DONE,
    FAILED,
    RUNNING,
    VIDEO_FUNCTION,
    is_valid_clip_id,
    state_key,
)
from stylenet import InvalidParams, ModelFileError
from stylenet.inference import inference_dtype
from stylenet.model_file import load_generator
from stylenet.video import OUTPUT_FORMATS, LocalStylizer, stylize_clip
from stylenet.video_job import ClipJobSpec
from stylenet.video_read import VideoError, VideoTooLarge

from .device import resolve_device
from .settings import WorkerSettings

log = logging.getLogger(__name__)

#: KEYS: the state hash. ARGV: ttl s, then field, value pairs. Writes unless the job is
#: canceled or its state is gone; returns 1 when written.
UPDATE_LUA = """
local s = redis.call('HGET', KEYS[1], 'state')
if not s or s == 'canceled' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


class ClipState:
    """Writes a clip job's state hash, unless it was canceled or deleted."""

    def __init__(self, redis: Redis, clip_id: str, ttl_s: int) -> None:
        """Follow the state of ``clip_id``, kept ``ttl_s`` after each write."""
        self.redis, self.key, self.ttl_s = redis, state_key(clip_id), ttl_s
        self._script = redis.register_script(UPDATE_LUA)

    def write(self, **fields: Any) -> bool:
        """Set ``fields``; False when the job was canceled or deleted (stop)."""
        args: list[Any] = [self.ttl_s]
        for name, value in fields.items():
            args += [name, "" if value is None else str(value)]
        try:
            return bool(self._script(keys=[self.key], args=args))
        except RedisError as exc:  # progress is best effort: the clip goes on
            log.warning("clip state %s not written: %s", self.key, exc)
            return True


def stylize_video(clip_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Stylize the stored clip ``clip_id`` as ``spec`` says (an RQ job; see the module doc).

    Returns:
        ``{"status": "done" | "failed" | "canceled", ...}``.
    """
    settings = WorkerSettings()
    job = get_current_job()
    redis: Redis = job.connection if job is not None else Redis.from_url(settings.redis_url)
    if not is_valid_clip_id(clip_id):
        return {"status": FAILED, "error": "not a clip id"}
    try:
        parsed = ClipJobSpec.from_dict(spec)
    except InvalidParams as exc:
        ClipState(redis, clip_id, 3600).write(state=FAILED, error=str(exc), code="invalid_params")
        return {"status": FAILED, "error": str(exc)}
    return ClipRun(clip_id, parsed, settings, open_store(settings.model_store), redis).run()


class ClipRun:
    """One clip job inside a work horse."""

    def __init__(
        self,
        clip_id: str,
        spec: ClipJobSpec,
        settings: WorkerSettings,
        store: ModelStore,
        redis: Redis,
    ) -> None:
        """Bind the run to its clip, spec, settings, store and Redis."""
        self.clip_id, self.spec, self.settings, self.store = clip_id, spec, settings, store
        self.state = ClipState(redis, clip_id, spec.ttl_s)
        self.stop = threading.Event()

    def run(self) -> dict[str, Any]:
        """Stylize; record ``done``, ``failed`` (with the reason) or nothing if canceled."""
        started = time.monotonic()
        if not self.state.write(
            state=RUNNING,
            started_at=time.time(),
            worker=f"{socket.gethostname()}:{os.getpid()}",
        ):
            return {"status": CANCELED}
        try:
            result = self._stylize()
        except InterruptedError:
            self.store.clips.delete(self.clip_id)
            return {"status": CANCELED}
        except (VideoError, VideoTooLarge, InvalidParams, ModelStoreError, ModelFileError) as exc:
            # The clip's or the request's fault: another attempt would fail alike.
            return self._fail(exc)
        except MemoryError as exc:
            return self._fail(
                exc, "out of memory: send a smaller clip or ask for a smaller max_side"
            )
        except Exception as exc:
            self._fail(exc)
            raise  # unexpected: RQ records the traceback (no retry)
        seconds = time.monotonic() - started
        log.info(
            "clip %s: %d frames %dx%d in %.1f s", self.clip_id, result["frames"],
            result["width"], result["height"], seconds,
        )  # fmt: skip
        if not self.state.write(state=DONE, finished_at=time.time(), seconds=round(seconds, 2),
                                **result):  # fmt: skip
            self.store.clips.delete(self.clip_id)  # canceled at the last moment
            return {"status": CANCELED}
        return {"status": DONE, **result}

    def _fail(self, exc: BaseException, message: str | None = None) -> dict[str, Any]:
        code = _code(exc)
        error = message or str(exc) or type(exc).__name__
        log.warning("clip %s failed (%s): %s", self.clip_id, code, error)
        fields: dict[str, Any] = {"state": FAILED, "error": error, "code": code}
        if isinstance(exc, VideoTooLarge):
            fields |= {"field": exc.field, "limit": exc.limit, "actual": exc.actual}
        self.state.write(finished_at=time.time(), **fields)
        return {"status": FAILED, "error": error, "code": code}

    def _stylize(self) -> dict[str, Any]:
        spec, area = self.spec, self.store.clips
        source = area.input_path(self.clip_id)
        if source is None:
            raise VideoError("the uploaded clip is gone (expired or deleted)")
        device = resolve_device(self.settings.device)
        weights = self.store.open_weights(spec.style_id, spec.version)
        generator, _ = load_generator(weights, device=device)
        stylizer = LocalStylizer(
            generator,
            dtype=inference_dtype(device, self.settings.cpu_dtype),
            strength=spec.strength,
            preserve_color=spec.preserve_color,
        )
        kind = spec.format or _input_kind(source.suffix)
        target = area.result_path(self.clip_id, OUTPUT_FORMATS[kind].suffix)

        def progress(done: int, total: int | None) -> None:
            if not self.state.write(done=done, total=total):
                self.stop.set()  # canceled or deleted: stop before the next batch

        result = stylize_clip(
            source,
            target,
            stylizer,
            output=kind,
            max_side=spec.max_side,
            temporal=spec.temporal,
            stats_frames=spec.stats_frames,
            flow_weight=spec.flow_weight,
            batch_size=spec.batch_frames,
            limits=spec.limits,
            progress=progress,
            stop=self.stop,
        )
        return {
            "frames": result.frames,
            "width": result.width,
            "height": result.height,
            "format": result.format.name,
            "media_type": result.format.media_type,
            "audio": result.audio,
            "result": target.name,
        }


def _input_kind(suffix: str) -> str:
    """Return the output family of an upload stored as ``input<suffix>`` (the API names it)."""
    kind = suffix.lstrip(".")
    if kind not in OUTPUT_FORMATS:
        raise VideoError(f"unknown stored clip kind {suffix!r}")
    return kind


def _code(exc: BaseException) -> str:
    """Return the error code a failed clip reports (the same codes ``POST /stylize`` answers)."""
    from stylenet.video_read import UnsupportedVideo

    if isinstance(exc, VideoTooLarge):
        return "clip_too_large"
    if isinstance(exc, UnsupportedVideo):
        return "unsupported_clip"
    if isinstance(exc, VideoError):
        return "invalid_clip"
    if isinstance(exc, InvalidParams):
        return "invalid_params"
    if isinstance(exc, ModelStoreError | ModelFileError):
        return "style_unavailable"
    if isinstance(exc, MemoryError):
        return "out_of_memory"
    return "internal_error"


# --- the worker process's side (never in the horse) -------------------------------------


def clip_of(job: Any) -> str | None:
    """Return the clip id a clip job works on (None for any other job)."""
    try:
        if job.func_name != VIDEO_FUNCTION or not job.args:
            return None
        clip_id = job.args[0]
    except Exception:  # an undeserializable job: not ours
        return None
    return clip_id if is_valid_clip_id(clip_id) else None


def settle_lost(redis: Redis, job: Any, reason: str) -> None:
    """Record ``failed`` for a clip job whose horse or worker died (unless canceled)."""
    clip_id = clip_of(job)
    if clip_id is None:
        return
    job.retries_left = 0  # a clip that killed one horse would kill the next
    try:
        ttl_s = int(job.args[1]["ttl_s"])
    except Exception:
        ttl_s = 24 * 3600
    try:
        ClipState(redis, clip_id, ttl_s).write(
            state=FAILED, error=reason.replace("training", "stylizing"), code="worker_lost"
        )
    except RedisError:
        log.warning("clip %s: could not record its lost job", clip_id, exc_info=True)


def clean_up_after(redis: Redis, store: ModelStore, job: Any) -> None:
    """After a clip job's horse exited: remove the files of a canceled or deleted clip."""
    clip_id = clip_of(job)
    if clip_id is None:
        return
    try:
        state = redis.hget(state_key(clip_id), "state")
    except RedisError:
        return
    if state is None or state.decode() == CANCELED:
        store.clips.delete(clip_id)


def sweep(redis: Redis, store: ModelStore) -> list[str]:
    """Remove the files of clips whose state expired (the results' TTL)."""
    try:
        return store.clips.sweep(lambda clip_id: bool(redis.exists(state_key(clip_id))))
    except RedisError:
        return []
