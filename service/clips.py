"""Short clips through ``POST /stylize``: MP4, WebM, GIF or animated WebP in, a clip out.

The route hands a body whose first bytes are a clip's (:func:`is_clip`) to
:func:`stylize_clip_request`. The clip runs on a thread of its own
(:func:`stylenet.video.stylize_clip`: streaming decode, frames in batches, encode, audio
copied); its frames reach the device through the runtime's batcher like any image,
``clip_batch_frames`` at a time, under a key of their own (frames of one clip batch
together, never with other requests' images). With ``temporal=shared`` the statistics
pass runs on the device thread first; with ``temporal=flow`` each frame is blended with
the previous output, warped by the motion, on the clip's thread. The result is spooled
to a temporary file and streamed out with its length.

Limits (413 ``clip_too_large``, with ``field``, ``limit`` and ``actual``) are checked on
the header before any frame is decoded and counted while decoding; with ``shared`` the
first pass decodes the whole clip before any frame is stylized, so a clip that lies in
its header costs decoding only. One clip at a time per process (429 ``clip_busy``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

import anyio.to_thread
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from service.errors import Overloaded
from service.runtime import BlendOptions, InferenceRuntime
from service.runtime.generators import LoadedGenerator
from service.settings import ServiceSettings
from service.uploads import capped_max_side
from stylenet.temporal import ClipStatistics, TemporalMode, WithStatistics, clip_statistics
from stylenet.video import (
    OUTPUT_FORMATS,
    ClipResult,
    VideoLimits,
    frames_to_tensor,
    sniff_video,
    stylize_clip,
)

#: Content-Types a raw clip body may have (multipart and octet-stream work too).
CLIP_MEDIA_TYPES = frozenset(
    {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "image/gif"}
)
#: Encoded clips above this size go to disk while they wait to be sent.
SPOOL_BYTES = 4 << 20


class ClipOptions(BaseModel):
    """A clip's options (query string or form fields); image-only ones are ignored."""

    model_config = ConfigDict(extra="ignore")

    style: str = Field(min_length=1, max_length=200)
    version: int | None = Field(None, ge=1)
    max_side: int | None = Field(None, ge=16, le=8192)
    strength: float = Field(1.0, ge=0.0, le=1.0)
    preserve_color: bool = False
    format: Literal["mp4", "webm", "gif", "webp"] | None = None
    temporal: TemporalMode | None = Field(
        None,
        description="How frames are kept alike: per_frame (each frame's own instance-norm "
        "statistics), shared (statistics over a sample of the clip's frames) or flow (each "
        "output blended with the previous one warped by the motion); default: setting "
        "clip_temporal; docs/VIDEO.md",
    )


def clip_openapi(file_field: str) -> dict[str, Any]:
    """OpenAPI for a clip upload: the options in the query, or a multipart form with them."""
    props = ClipOptions.model_json_schema()["properties"]
    binary = {"type": "string", "format": "binary"}
    form = {"type": "object", "required": [file_field, "style"]}
    return {
        "parameters": [
            {"name": name, "in": "query", "required": name == "style", "schema": prop}
            for name, prop in props.items()
        ],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": form | {"properties": {file_field: binary, **props}}
                },
                **{t: {"schema": binary} for t in sorted(CLIP_MEDIA_TYPES)},
            },
        },
    }


def is_clip(data: bytes) -> bool:
    """Whether a request body is a clip (any GIF; a WebP only when animated)."""
    return sniff_video(data[:32]) is not None


class _BatcherStylizer:
    """Frames from the clip's thread to the runtime's batcher and device thread, and back."""

    def __init__(
        self,
        runtime: InferenceRuntime,
        loaded: LoadedGenerator,
        options: BlendOptions,
        deadline: float,
        client: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.runtime, self.loaded, self.options = runtime, loaded, options
        self.deadline, self.client, self.loop = deadline, client, loop
        self.with_stats: LoadedGenerator | None = None

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def statistics(self, frames: Sequence[np.ndarray]) -> ClipStatistics:
        executor = self.runtime.executor
        if executor is None:
            raise RuntimeError("the inference runtime is not started")
        model = self.loaded.model

        def measure() -> ClipStatistics:
            device = next(model.parameters()).device
            return clip_statistics(model, frames_to_tensor(frames, device))

        return self._call(executor.run(measure))

    def stylize(
        self, frames: Sequence[np.ndarray], stats: ClipStatistics | None
    ) -> list[np.ndarray]:
        loaded = self.loaded
        if stats is not None:
            if self.with_stats is None:
                # A generator of its own for the batcher: its own key (frames of this clip
                # batch only together), the eager model with the clip's statistics.
                self.with_stats = dataclasses.replace(
                    loaded,
                    key=("clip", loaded.key, id(stats)),
                    model=WithStatistics(loaded.model, stats),
                    compiled=None,
                    **({"ort": None} if hasattr(loaded, "ort") else {}),
                )
            loaded = self.with_stats
        return self._call(self._submit(loaded, frames))

    async def _submit(
        self, loaded: LoadedGenerator, frames: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        # Work ahead of the still images that time-aware admission prices (pace.hold).
        flops = loaded.flops_per_pixel * sum(f.shape[0] * f.shape[1] for f in frames)
        with self.runtime.pace.hold(flops):
            results = await asyncio.gather(
                *(
                    self.runtime.stylize(loaded, frame, self.options, self.deadline, self.client)
                    for frame in frames
                )
            )
        return [np.asarray(r.value) for r in results]


_busy = asyncio.Lock()


async def stylize_clip_request(
    runtime: InferenceRuntime,
    settings: ServiceSettings,
    data: bytes,
    fields: dict[str, Any],
    deadline: float,
    client: str,
) -> Response:
    """Answer ``POST /stylize`` for a clip (see the module docstring)."""
    options = ClipOptions.model_validate(fields)  # ValidationError -> 422
    max_side = capped_max_side(
        options.max_side, settings.clip_max_side, settings.clip_max_side, " for a clip"
    )
    if _busy.locked():
        runtime.metrics.rejected.labels(reason="clip_busy").inc()
        raise Overloaded("a clip is being stylized; retry later", code="clip_busy", retry_after=30)
    async with _busy:
        target = await runtime.styles.resolve(options.style, options.version)
        loaded = await runtime.generator(target)
        limits = VideoLimits(
            max_seconds=settings.clip_max_seconds,
            max_frames=settings.clip_max_frames,
            max_frame_pixels=settings.clip_max_frame_pixels,
            max_total_pixels=settings.clip_max_total_pixels,
        )
        blend = BlendOptions(options.strength, options.preserve_color)
        loop = asyncio.get_running_loop()
        stylizer = _BatcherStylizer(runtime, loaded, blend, deadline, client, loop)
        stop = threading.Event()
        # Not a with-block: on success the file belongs to the response, which closes it.
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, prefix="stylize-clip-")  # noqa: SIM115
        started = time.perf_counter()
        try:
            result: ClipResult = await anyio.to_thread.run_sync(
                lambda: stylize_clip(
                    data,
                    out,  # type: ignore[arg-type]
                    stylizer,
                    output=options.format,
                    max_side=max_side,
                    temporal=options.temporal or settings.clip_temporal,
                    stats_frames=settings.clip_stats_frames,
                    flow_weight=settings.clip_flow_weight,
                    batch_size=settings.clip_batch_frames,
                    limits=limits,
                    stop=stop,
                ),
                abandon_on_cancel=True,
            )
            size = out.tell()
            out.seek(0)
        except BaseException:
            stop.set()  # a cancelled request (timeout, disconnect) stops the clip's thread
            out.close()
            raise
    from service.routes.stylize import SpooledResponse  # the large images' streaming

    headers = {
        "X-Style-Id": target.style_id,
        "X-Style-Version": str(target.version),
        "X-Image-Size": f"{result.width}x{result.height}",
        "X-Clip-Frames": str(result.frames),
        "X-Clip-Audio": result.audio,
        "Server-Timing": f"clip;dur={(time.perf_counter() - started) * 1000:.1f}",
    }
    return SpooledResponse(out, size, media_type=result.format.media_type, headers=headers)


__all__ = [
    "CLIP_MEDIA_TYPES",
    "OUTPUT_FORMATS",
    "ClipOptions",
    "clip_openapi",
    "is_clip",
    "stylize_clip_request",
]
