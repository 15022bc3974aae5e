"""``/videos``: clips too long for ``POST /stylize``, stylized by a job on the worker.

``POST /videos`` (multipart: a ``clip`` file and the options of ``POST /stylize``'s clips
as fields, or the clip as the body and the options in the query string) answers 202 with
the job's document once the upload is stored and enqueued; ``GET /videos/{id}`` its
state (``queued``, ``running``, ``done``, ``failed``, ``canceled``), frames done of
frames in all and the error; ``GET /videos/{id}/events`` the same as Server-Sent Events
(``video`` on every change, then ``end``, ``deleted`` or ``timeout``; the slots of
:class:`service.streams.StreamLimiter`, like a style's stream); ``GET /videos/{id}/result``
the clip; ``DELETE /videos/{id}`` cancels a job or deletes a finished one. Producer and
state: :mod:`service.videos`; the job: ``worker/videos.py``; docs/VIDEO.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from service.auth import KeyFirstRoute, client_id, identify
from service.clips import CLIP_MEDIA_TYPES, ClipOptions, clip_openapi, is_clip
from service.deps import (
    LimitsDep,
    RequireStylizeKey,
    RuntimeDep,
    SettingsDep,
    StreamsDep,
    StylizeCallerDep,
)
from service.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    UnsupportedMediaType,
)
from service.routes.events import KEEPALIVE_S, SlottedStream
from service.schemas import ErrorOut
from service.settings import ServiceSettings
from service.uploads import capped_max_side, read_upload
from service.videos import TERMINAL, VideoJobs, probe
from stylenet.video import OUTPUT_FORMATS
from stylenet.video_job import ClipJobSpec

router = APIRouter(tags=["videos"], route_class=KeyFirstRoute)

CLIP_FIELDS = ("clip", "image")  # "image" too: the page's picker and POST /stylize's name
RAW_TYPES = frozenset({*CLIP_MEDIA_TYPES, "image/webp", "application/octet-stream"})


def _jobs(request: Request) -> VideoJobs:
    """Return the app's :class:`VideoJobs` (made on first use from the lifespan's resources)."""
    jobs: VideoJobs | None = getattr(request.app.state, "videos", None)
    if jobs is None:
        state = request.app.state
        jobs = state.videos = VideoJobs(state.redis, state.store, state.settings)
    return jobs


def _error(text: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": text}


async def _read_clip(request: Request) -> tuple[bytes, dict[str, Any]]:
    """Return the clip's bytes and the options (query string, then form fields)."""
    return await read_upload(
        request,
        file_fields=CLIP_FIELDS,
        raw_types=RAW_TYPES,
        missing_code="missing_clip",
        raw_description="the clip itself (video/mp4, video/webm, image/gif, image/webp)",
    )


def _spec(
    settings: ServiceSettings, options: ClipOptions, style_id: str, version: int
) -> ClipJobSpec:
    max_side = capped_max_side(
        options.max_side, settings.clip_max_side, settings.clip_max_side, " for a clip"
    )
    return ClipJobSpec(
        style_id=style_id,
        version=version,
        format=options.format,
        max_side=max_side,
        strength=options.strength,
        preserve_color=options.preserve_color,
        temporal=options.temporal or settings.clip_temporal,
        stats_frames=settings.clip_stats_frames,
        flow_weight=settings.clip_flow_weight,
        batch_frames=settings.clip_batch_frames,
        max_seconds=settings.video_max_seconds,
        max_frames=settings.video_max_frames,
        max_frame_pixels=settings.clip_max_frame_pixels,
        max_total_pixels=settings.video_max_total_pixels,
        ttl_s=settings.video_ttl_s,
    )


@router.post(
    "/videos",
    dependencies=[RequireStylizeKey],
    status_code=202,
    summary="Stylize a clip in the background (a job on the worker)",
    responses={
        202: {"description": "Stored and enqueued: the job's document (Location: its URL)"},
        400: _error("invalid_clip: corrupt or truncated"),
        404: _error("Unknown style or version"),
        409: _error("The style has no published version yet"),
        413: _error("clip_too_large (field, limit, actual) from the header; or the body"),
        415: _error("unsupported_clip, or a Content-Type not taken"),
        422: _error("Invalid options"),
        429: _error("videos_full (video_max_waiting clips stored) or rate_limited"),
        503: _error("queue_unavailable: Redis is down"),
    },
    openapi_extra=clip_openapi("clip"),
)
async def submit_video(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    caller: StylizeCallerDep,
    limits: LimitsDep,
) -> JSONResponse:
    """Check the clip's header against the limits, store it, and enqueue its job."""
    if limits.stylize is not None and not caller.admin:
        try:
            await limits.stylize.check(client_id(request, caller))
        except RateLimited:
            runtime.metrics.rejected.labels(reason="rate_limited").inc()
            raise
    data, fields = await _read_clip(request)
    if not is_clip(data):
        raise UnsupportedMediaType(
            "not a clip: send MP4, WebM, GIF or animated WebP", code="unsupported_clip"
        )
    options = ClipOptions.model_validate(fields)  # ValidationError -> 422
    target = await runtime.styles.resolve(options.style, options.version)
    spec = _spec(settings, options, target.style_id, target.version)
    jobs = _jobs(request)
    probed = await anyio.to_thread.run_sync(
        lambda: probe(data, jobs.limits(), spec.max_side, spec.format)
    )
    doc = await anyio.to_thread.run_sync(lambda: jobs.submit(data, probed, spec, caller.key_id))
    return JSONResponse(doc, status_code=202, headers={"Location": f"/videos/{doc['id']}"})


@router.get(
    "/videos/{clip_id}",
    summary="A clip job's state, progress and error",
    responses={404: _error("video_not_found: never was, deleted or expired")},
)
async def get_video(clip_id: str, request: Request) -> dict[str, Any]:
    """Return the job's document (state, progress ``{done, total, fraction}``, error, result)."""
    return await anyio.to_thread.run_sync(_jobs(request).get, clip_id)


@router.get(
    "/videos/{clip_id}/result",
    response_class=FileResponse,
    summary="The stylized clip",
    responses={
        200: {"content": {f.media_type: {} for f in OUTPUT_FORMATS.values()}},
        404: _error("video_not_found"),
        409: _error("video_not_ready: the job is not done (its state is in the error)"),
    },
)
async def video_result(clip_id: str, request: Request) -> FileResponse:
    """Send the result (ranges supported, so a ``<video>`` element can seek)."""
    path, media_type = await anyio.to_thread.run_sync(_jobs(request).result, clip_id)
    return FileResponse(
        path,
        media_type=media_type,
        filename=f"stylized-{clip_id[:8]}{path.suffix}",
        content_disposition_type="inline",
    )


@router.delete(
    "/videos/{clip_id}",
    summary="Cancel a clip job, or delete a finished one and its result",
    responses={
        403: _error("not_owner: another key's clip"),
        404: _error("video_not_found"),
    },
)
async def delete_video(
    clip_id: str, request: Request, settings: SettingsDep, caller: StylizeCallerDep
) -> dict[str, Any]:
    """Cancel (a queued or running job: stopped, files removed) or delete (a finished one)."""
    jobs = _jobs(request)
    owner = await anyio.to_thread.run_sync(jobs.owner, clip_id)
    if owner is not None and not caller.may_manage(owner):
        raise Forbidden("this clip was sent with another key", code="not_owner")
    return await anyio.to_thread.run_sync(jobs.cancel_or_delete, clip_id)


def _event(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


async def video_events(
    jobs: VideoJobs, first: dict[str, Any], *, poll_s: float, max_s: float
) -> AsyncIterator[str]:
    """Yield ``video`` events on every change of the job until it ends."""
    started = last_sent = time.monotonic()
    yield f"retry: {int(max(1.0, poll_s) * 1000)}\n\n"
    doc: dict[str, Any] | None = first
    last: dict[str, Any] | None = None
    while True:
        now = time.monotonic()
        if doc is None:
            yield _event("deleted", {"id": first["id"]})
            return
        if doc != last:
            last, last_sent = doc, now
            yield _event("video", doc)
            if doc["state"] in TERMINAL:
                yield _event("end", {"id": doc["id"], "state": doc["state"]})
                return
        elif now - last_sent >= KEEPALIVE_S:
            last_sent = now
            yield ": keep-alive\n\n"
        if now - started >= max_s:
            yield _event("timeout", {"id": first["id"]})
            return
        await asyncio.sleep(poll_s)
        try:
            doc = await anyio.to_thread.run_sync(jobs.get, first["id"])
        except NotFound:
            doc = None


@router.get(
    "/videos/{clip_id}/events",
    response_class=StreamingResponse,
    summary="Follow a clip job (Server-Sent Events)",
    responses={
        200: {"content": {"text/event-stream": {}}},
        404: _error("video_not_found"),
        429: _error("too_many_streams"),
        503: _error("streams_full"),
    },
)
async def follow_video(
    clip_id: str, request: Request, settings: SettingsDep, streams: StreamsDep
) -> StreamingResponse:
    """Stream ``video`` events (the document) until the job is done, failed or canceled."""
    jobs = _jobs(request)
    first = await anyio.to_thread.run_sync(jobs.get, clip_id)  # 404 before streaming
    client = client_id(request, identify(settings, request.headers.get("authorization")))
    return SlottedStream(
        streams.slot(client),
        video_events(jobs, first, poll_s=settings.events_poll_s, max_s=settings.events_max_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
