"""``POST /stylize``: an image and a style in, the stylized image out.

The route owns the request's life: admission (the caller's rate limit and a full queue
are refused before the body is read), the body, a timeout counted from arrival, and a
watch on the connection, so a client that disconnects gives its queue slot back at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from service.auth import KeyFirstRoute, client_id
from service.clips import CLIP_MEDIA_TYPES, is_clip, stylize_clip_request
from service.deps import LimitsDep, RequireStylizeKey, RuntimeDep, SettingsDep, StylizeCallerDep
from service.errors import (
    Conflict,
    RateLimited,
    RequestTimeout,
)
from service.imaging import MEDIA_TYPES
from service.middleware import ARRIVAL
from service.routes import progress
from service.runtime import BlendOptions, InferenceRuntime, LoadedGenerator, ServeTarget, blends
from service.runtime.blends import BlendTarget
from service.runtime.progress import Canceled, StylizeProgress
from service.schemas import ErrorOut, StylizeOptions
from service.settings import ServiceSettings
from service.uploads import capped_max_side, read_upload

log = logging.getLogger(__name__)
router = APIRouter(tags=["stylize"], route_class=KeyFirstRoute)
# A named request's progress and stop (GET/DELETE /stylize/progress/{id}) come with it.
router.include_router(progress.router)

IMAGE_FIELD = "image"
RAW_TYPES = frozenset({*MEDIA_TYPES.values(), *CLIP_MEDIA_TYPES, "application/octet-stream"})
CLIENT_CLOSED = 499  # nginx's "client closed request"; nobody reads it, logs do


#: Why each option is documented twice: OpenAPI has no per-media-type parameters.
QUERY_NOTE = "Query string: for a raw image body; with multipart/form-data send it as a form field."


def _openapi() -> dict[str, Any]:
    # The body is parsed by hand (multipart or raw image), so document it here.
    schema = StylizeOptions.model_json_schema()
    props = schema["properties"]
    image = {"type": "string", "format": "binary"}
    return {
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": f"{prop['description']}. {QUERY_NOTE}",
                "schema": prop,
            }
            for name, prop in props.items()
        ],
        "requestBody": {
            "required": True,
            "description": "Multipart with an `image` file and the options as fields, or the "
            "image itself as the body (options in the query string). A clip (MP4, WebM, GIF, "
            "animated WebP) takes the options of POST /videos instead, `temporal` "
            "(per_frame, shared, flow) among them; docs/VIDEO.md.",
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [IMAGE_FIELD, "style"],
                        "properties": {IMAGE_FIELD: image, **props},
                    }
                },
                **{t: {"schema": image} for t in sorted(RAW_TYPES)},
            },
        },
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "Empty body, not an image, or a corrupt / truncated image",
        401: "API key missing (when stylize_requires_key)",
        403: "API key not valid",
        404: "Unknown style or version (of any style of a blend)",
        409: "The style has no published version yet (the error carries its status)",
        413: "Body over max_upload_bytes, or image over max_pixels",
        415: "Unsupported image format or Content-Type",
        422: "Invalid options (a malformed blend spec says what is wrong); "
        "styles_incompatible: the styles of a blend share no base",
        429: "Queue full (overloaded; fair_share: this client holds more of the queue than "
        "any other), the decoded pixels in flight at inflight_pixels (pixel_budget), the "
        "memory in flight at inflight_bytes (memory_budget), the large-image lane full "
        "(large_queue_full), or (rate_limited) the key's or address's stylize rate; see "
        "Retry-After",
        500: "The style's weights are corrupt (the error names the style)",
        503: "would_time_out: the work ahead in its lane would keep this image past its "
        "deadline (the body says how long it would wait and take); see Retry-After",
        504: "Not answered within request_timeout_s",
    }.items()
}


@router.post(
    "/stylize",
    dependencies=[RequireStylizeKey],
    response_class=Response,
    summary="Stylize an image",
    responses={
        200: {
            "description": "The stylized image, the size of the (downscaled) input. Headers: "
            "X-Style-Id, X-Style-Version (a blend: its canonical spec and each style's "
            "version, comma-separated), X-Batch-Size, Server-Timing.",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()
            },
        },
        **_ERRORS,
    },
    openapi_extra=_openapi(),
)
async def stylize(
    request: Request,
    runtime: RuntimeDep,
    settings: SettingsDep,
    caller: StylizeCallerDep,
    limits: LimitsDep,
) -> Response:
    """Apply a style to a JPEG, PNG or WebP image (EXIF orientation and alpha handled)."""
    arrival: float = request.scope.get(ARRIVAL) or time.monotonic()
    deadline = arrival + settings.request_timeout_s
    client = client_id(request, caller)
    if limits.stylize is not None and not caller.admin:
        try:
            await limits.stylize.check(client)
        except RateLimited:
            runtime.metrics.rejected.labels(reason="rate_limited").inc()
            raise
    runtime.batcher.check_capacity(client)  # refuse before reading a byte when overloaded
    runtime.budget.check()  # and when the pixel budget is spent
    timings: dict[str, float] = {}
    limit = Limit(arrival, settings.request_timeout_s)
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())) as scope:
            limit.scope = scope
            started = time.perf_counter()
            data, fields = await _read_input(request)
            timings["read"] = time.perf_counter() - started
            if is_clip(data):  # a clip: frames through the batcher, on a longer limit
                limit.extend(settings.clip_request_timeout_s)
                work = stylize_clip_request(runtime, settings, data, fields, limit.deadline, client)
            else:
                work = _process(runtime, settings, data, fields, limit, timings, arrival, client)
            return await _unless_disconnected(request, runtime, work)
    except TimeoutError as exc:
        runtime.metrics.rejected.labels(reason="timeout").inc()
        raise RequestTimeout(
            f"no answer within {limit.seconds:g} s of the request's arrival"
        ) from exc


@dataclass
class Limit:
    """A request's time limit, which a large image extends once its size is known."""

    arrival: float
    seconds: float
    scope: asyncio.Timeout | None = None

    @property
    def deadline(self) -> float:
        """When the request times out (monotonic clock, as the event loop's)."""
        return self.arrival + self.seconds

    def extend(self, seconds: float) -> None:
        """Allow ``seconds`` from arrival instead (never shortens)."""
        if seconds > self.seconds:
            self.seconds = seconds
            if self.scope is not None:
                remaining = self.deadline - time.monotonic()
                self.scope.reschedule(asyncio.get_running_loop().time() + remaining)


async def _read_input(request: Request) -> tuple[bytes, dict[str, Any]]:
    """Return the image bytes and the option fields (query string, then form fields)."""
    return await read_upload(
        request,
        file_fields=(IMAGE_FIELD,),
        raw_types=RAW_TYPES,
        missing_code="missing_image",
        raw_description="the image itself as image/jpeg, image/png or image/webp",
    )


async def _process(
    runtime: InferenceRuntime,
    settings: ServiceSettings,
    data: bytes,
    fields: dict[str, Any],
    limit: Limit,
    timings: dict[str, float],
    arrival: float,
    client: str,
) -> Response:
    options = StylizeOptions.model_validate(fields)  # ValidationError -> 422
    max_side = capped_max_side(options.max_side, settings.max_side_default, settings.max_side_limit)
    # Admission by cost: the decoded size, from the header, priced with the generator's
    # memory per pixel (loaded first, on a miss) and reserved until the answer.
    width, height = runtime.probe(data, max_side)
    # One style, or a blend of styles sharing a base (service.runtime.blends).
    target = await blends.resolve(runtime.styles, options.style, options.version)
    started = time.perf_counter()
    generator = await runtime.generator(target)
    timings["load"] = time.perf_counter() - started
    progress = runtime.progress.open(options.progress_id)
    try:
        async with runtime.admission(
            width, height, generator=generator, data=data, arrival=arrival
        ):
            response = await _admitted(
                runtime,
                settings,
                data,
                options,
                max_side,
                limit,
                timings,
                arrival,
                client,
                progress,
                target,
                generator,
            )
    except (asyncio.CancelledError, Canceled) as exc:
        progress.finish("canceled")
        if isinstance(exc, Canceled):
            raise Conflict("the request was canceled", code="canceled") from exc
        raise
    except BaseException:
        progress.finish("failed")
        raise
    progress.finish("done")
    return response


async def _admitted(
    runtime: InferenceRuntime,
    settings: ServiceSettings,
    data: bytes,
    options: StylizeOptions,
    max_side: int,
    limit: Limit,
    timings: dict[str, float],
    arrival: float,
    client: str,
    progress: StylizeProgress,
    target: ServeTarget | BlendTarget,
    generator: LoadedGenerator,
) -> Response:
    started = time.perf_counter()
    decoded = await runtime.decode(data, max_side)
    timings["decode"] = time.perf_counter() - started
    large = runtime.is_large(*decoded.pixels.shape[:2], generator)
    if large:
        # Exact tiled inference in the large-image lane: minutes on a CPU, not seconds.
        limit.extend(settings.large_request_timeout_s)
    blend = BlendOptions(options.strength, options.preserve_color)
    if not large:
        progress.start()  # a large image's lane says when it starts
    result = await runtime.stylize(
        generator, decoded.pixels, blend, limit.deadline, client, progress
    )
    progress.state = "encoding"
    timings["queue"] = result.queue_wait_s
    timings["infer"] = result.run_s
    fmt = options.format or decoded.format
    width, height = decoded.size
    headers = {
        "X-Style-Id": target.style_id,
        "X-Style-Version": str(target.version),
        "X-Batch-Size": str(result.batch_size),
        "X-Image-Size": f"{width}x{height}",
    }
    started = time.perf_counter()
    if large:
        spooled, size = await runtime.encode_spooled(result.value, fmt, options.quality)
        del result  # the pixels (hundreds of MB at 8K) are not needed while it streams
        timings["encode"] = time.perf_counter() - started
        timings["total"] = time.monotonic() - arrival
        headers["Server-Timing"] = _server_timing(timings)
        return SpooledResponse(spooled, size, media_type=MEDIA_TYPES[fmt], headers=headers)
    body = await runtime.encode(result.value, fmt, options.quality)
    timings["encode"] = time.perf_counter() - started
    timings["total"] = time.monotonic() - arrival
    headers["Server-Timing"] = _server_timing(timings)
    return Response(content=body, media_type=MEDIA_TYPES[fmt], headers=headers)


def _server_timing(timings: dict[str, float]) -> str:
    return ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())


class SpooledResponse(StreamingResponse):
    """An encoded large output streamed from its spooled file in ``CHUNK_BYTES`` pieces.

    The length is known, so it is sent as ``Content-Length`` (no chunked encoding) and
    clients can show progress. The server's flow control pauses the reads while the
    client is slow; the file is closed (deleted) when the response ends, however it ends.
    """

    CHUNK_BYTES = 1 << 20

    def __init__(
        self, file: BinaryIO, size: int, *, media_type: str, headers: dict[str, str]
    ) -> None:
        """Stream ``size`` bytes of ``file`` (rewound), then close it."""
        self.file = file
        super().__init__(
            self._chunks(), media_type=media_type, headers={**headers, "Content-Length": str(size)}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the response, then close the file, however the sending ends.

        A client that hangs up mid-body cancels the sending, and the chunk generator may
        then never be finalized: closing here is the one sure place.
        """
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.file.close()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await anyio.to_thread.run_sync(self.file.read, self.CHUNK_BYTES):
            yield chunk


async def _unless_disconnected(
    request: Request, runtime: InferenceRuntime, work: Coroutine[Any, Any, Response]
) -> Response:
    """Run ``work`` but cancel it (freeing its queue slot) if the client disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        runtime.metrics.rejected.labels(reason="disconnected").inc()
        log.info("client disconnected; request %s dropped", request.scope.get("stylize.request_id"))
        return Response(status_code=CLIENT_CLOSED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Let the cancellation run now, so the slot is free when we return.
            await asyncio.gather(task, return_exceptions=True)


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read: the next message the server sends is the disconnect.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
