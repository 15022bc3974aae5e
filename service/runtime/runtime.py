"""The inference runtime: device executor, codec pool, generator cache, batcher, warm-up.

One per app (one per process and device). Routes call :meth:`InferenceRuntime.decode`,
:meth:`~InferenceRuntime.stylize` and :meth:`~InferenceRuntime.encode`; everything
blocking happens off the event loop: model code on the device thread, image codecs in
the codec pool (in parallel with the device), store reads in anyio's thread pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import anyio.to_thread
import numpy as np
import torch

from model_store import ModelStore
from service import imaging
from service.codecs import ImageCodecs, host_pixels
from service.metrics import ServiceMetrics
from service.onnx_exports import onnx_export
from service.runtime import blends, mixed, trim
from service.runtime.backend_choice import settle_backend
from service.runtime.batcher import Batched, Batcher
from service.runtime.budget import Cost, PixelBudget
from service.runtime.cache import GeneratorCache
from service.runtime.calibration import Reference, reference_forward
from service.runtime.executor import DeviceExecutor, resolve_device
from service.runtime.generators import (
    HOST_SLACK,
    BlendOptions,
    LoadedGenerator,
    load_on_device,
    release_memory,
    stylize_batch,
    warm,
)
from service.runtime.large import LargeLane
from service.runtime.pace import Pace
from service.runtime.progress import ProgressBoard, StylizeProgress
from service.runtime.resolver import ModelKey, ServeTarget, StyleResolver
from service.settings import ServiceSettings
from stylenet.inference import inference_dtype
from stylenet.ort_backend import Calibration, OrtGenerator, calibrate

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Encoded large outputs above this size go to a temporary file (see encode_spooled).
SPOOL_BYTES = 4 << 20


@dataclass(frozen=True)
class BatchKey:
    """Requests that may share a forward pass: same weights, same image shape."""

    model: ModelKey
    height: int
    width: int


@dataclass(frozen=True)
class _Item:
    generator: LoadedGenerator
    pixels: np.ndarray | torch.Tensor
    options: BlendOptions


class InferenceRuntime:
    """Everything that turns decoded pixels into stylized pixels."""

    def __init__(self, settings: ServiceSettings, store: ModelStore, metrics: ServiceMetrics):
        """Build the runtime (not started: call :meth:`start` in the event loop)."""
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.device = resolve_device(settings.device)
        self.dtype = inference_dtype(self.device, settings.cpu_dtype)
        self.executor: DeviceExecutor | None = None
        #: PIL until :meth:`start` sets up the device codecs (``gpu_codecs``).
        self.codecs = ImageCodecs(None)
        self._codec_pool: ThreadPoolExecutor | None = None
        self.styles = StyleResolver(store, ttl_s=settings.style_cache_ttl_s)
        self.blends = blends.BlendBuilder(store)  # style=a:0.7,b:0.3
        self.mixer = mixed.Mixer(enabled=settings.mixed_batches)  # styles sharing convolutions
        self.cache = GeneratorCache(
            self.mixer.loading(self._load, lambda *a: self._device().run(*a)),
            max_models=settings.cache_max_models,
            max_bytes=settings.cache_max_bytes,
            metrics=metrics,
            release=self._release,
        )
        self.batcher = Batcher(
            self._run_batch,
            max_batch_size=settings.effective_max_batch_size(self.device.type),
            batch_timeout_s=settings.batch_timeout_ms / 1000,
            queue_size=settings.queue_size,
            metrics=metrics,
        )
        #: Admission by cost of the normal lane (:mod:`service.runtime.budget`).
        self.budget = PixelBudget(
            settings.inflight_pixels,
            metrics,
            retry_after=self.batcher.retry_after,
            limit_bytes=settings.inflight_bytes or None,
            forwards_at_once=settings.effective_max_batch_size(self.device.type),
            on_empty=self._after_burst,
        )
        #: Time-aware admission of the normal lane (:mod:`service.runtime.pace`).
        self.pace = Pace("stylize", metrics, enabled=settings.deadline_admission)
        # Large images (over ``tile_pixels``) have a lane of their own: one at a time, by
        # exact tiled inference, on their own thread, so they never hold up the batcher.
        # Its tiled forwards cost at least the normal lane's per FLOP: priced by it until
        # the lane has measured its own.
        self.large = LargeLane(settings, metrics, self.budget, prior=self.pace.rate)
        #: Named requests' progress (``GET /stylize/progress/{id}``).
        self.progress = ProgressBoard()
        #: Times the heap was given back after a burst (:mod:`service.runtime.trim`).
        self.trims = 0
        self.warmed = False
        #: What the start-up calibration measured (:meth:`_calibrate_pace`).
        self.pace_reference: Reference | None = None
        self.warm_errors: dict[str, str] = {}
        #: What runs the batcher's forwards (``torch`` or ``onnxruntime``), and why.
        self.backend = "torch"
        self.backend_reason = "STYLIZE_BACKEND=torch"
        self.calibration: Calibration | None = None
        # Set once ``backend`` is final; a generator loaded before would be torch's.
        self._backend_decided = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the device thread, the codec pool and the batcher."""
        self.executor = DeviceExecutor(self.device, threads=self.settings.effective_torch_threads())
        if self.device.type == "cuda" and self.settings.process_dir and self.settings.workers > 1:
            # Several HTTP processes share this GPU: each gets its share of the memory, so
            # one process's cache cannot starve the others into OOM.
            share = 0.9 / self.settings.workers
            await self.executor.run(torch.cuda.set_per_process_memory_fraction, share, self.device)
        self._codec_pool = ThreadPoolExecutor(
            max_workers=self.settings.codec_threads,
            thread_name_prefix="stylize-codec",
            # The device codecs run there: their CUDA calls go to the service's GPU.
            initializer=torch.cuda.set_device if self.device.type == "cuda" else None,
            initargs=(self.device,) if self.device.type == "cuda" else (),
        )
        self.large.start()
        if self.settings.uses_gpu_codecs(self.device.type):
            self.codecs = await self._codec(self._device_codecs)
        self._choose_backend_now()
        self.batcher.start()

    def _choose_backend_now(self) -> None:
        """Settle the backend where no measurement is needed (all but CPU ``auto``)."""
        settled = settle_backend(self.settings.backend, self.device)
        if settled is not None:
            self.backend, self.backend_reason = settled
            self._backend_decided.set()

    async def _calibrate_backend(self) -> None:
        """``auto`` on a CPU: time both backends on the device thread; keep the faster."""
        if self._backend_decided.is_set():
            return
        try:
            self.calibration = await self._device().run(
                calibrate,
                torch_dtype=self.dtype,
                threads=self.settings.effective_torch_threads(),
            )
            self.backend = self.calibration.backend
            self.backend_reason = f"STYLIZE_BACKEND=auto: {self.calibration.reason}"
        except Exception as exc:  # a failed measurement must not keep the service down
            log.warning("backend calibration failed, serving with torch: %s", exc)
            self.backend_reason = f"STYLIZE_BACKEND=auto: calibration failed ({exc}); torch"
        finally:
            self._backend_decided.set()
        log.info("backend %s (%s)", self.backend, self.backend_reason)

    def _device_codecs(self) -> ImageCodecs:
        """Build the torchvision.io codecs on the device (codec pool), or PIL on ``auto``."""
        batch = self.settings.effective_max_batch_size(self.device.type)
        try:
            return ImageCodecs(self.device, max_batch=batch)
        except Exception as exc:
            if self.settings.gpu_codecs == "on":
                raise RuntimeError(f"STYLIZE_GPU_CODECS=on but {exc}") from exc
            log.warning("JPEG on %s unavailable (%s); using PIL", self.device, exc)
            return ImageCodecs(None)

    async def warm_up(self) -> None:
        """Load ``warm_styles`` and run each at ``warm_sides``; then mark the runtime warm.

        A style that fails to warm is logged and listed in ``warm_errors``; it does not
        keep the service from becoming ready (its requests get the error instead).
        """
        await self._device().run(lambda: None)  # the device thread is up and answering
        await self._calibrate_backend()
        await self._calibrate_pace()
        for style_id in self.settings.warm_styles:
            try:
                loaded = await self.cache.get((await self.styles.resolve(style_id)).key)
                for side in self.settings.warm_sides:
                    seconds = await self._device().run(warm, loaded, side, self.dtype)
                    # Until the first request's forward, the warm-up prices the lane.
                    self.pace.rate.observe(loaded.flops_per_pixel * side * side, seconds, seed=True)
                    log.info("warmed %s at %d² in %.2f s", style_id, side, seconds)
            except Exception as exc:
                log.error("warm-up of style %s failed: %s", style_id, exc)
                self.warm_errors[style_id] = str(exc)
        self.warmed = True

    async def _calibrate_pace(self) -> None:
        """Measure a reference forward at ``pace_calibration_side``².

        It seeds the normal lane's rate and, on a CPU, this host's memory slack, which
        prices forwards for the memory budget (:mod:`service.runtime.calibration`).
        """
        side = self.settings.pace_calibration_side
        memory = self.device.type == "cpu" and self.budget.limit_bytes is not None
        if not side or not (self.settings.deadline_admission or memory):
            return
        try:
            reference = await self._device().run(reference_forward, self.device, side, self.dtype)
        except Exception as exc:  # a failed measurement must not keep the service down
            log.warning("pace calibration failed; admission by time waits for a forward: %s", exc)
            return
        self.pace_reference = reference
        if self.settings.deadline_admission:
            self.pace.rate.observe(reference.flops, reference.seconds, seed=True)
        log.info(
            "pace calibration: a reference %d² forward took %.2f s%s",
            side,
            reference.seconds,
            ""
            if reference.slack is None
            else f", host memory {reference.slack:.2f}× traced "
            f"(forwards priced at {self.host_slack:.2f}×)",
        )

    @property
    def host_slack(self) -> float:
        """RSS per traced byte of a CPU forward here: the default, or more if measured."""
        measured = self.pace_reference.slack if self.pace_reference is not None else None
        return max(HOST_SLACK, measured or 0.0)

    async def close(self) -> None:
        """Stop the batcher and the threads (queued requests fail)."""
        await self.batcher.stop()
        if self._codec_pool is not None:
            self._codec_pool.shutdown(wait=False, cancel_futures=True)
        self.large.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False)

    @property
    def ready(self) -> bool:
        """Warm, the device thread alive and the batcher dispatching."""
        return (
            self.warmed
            and self.executor is not None
            and self.executor.alive()
            and self.batcher.running
        )

    # --- request path ---------------------------------------------------------------------

    def probe(self, data: bytes, max_side: int) -> tuple[int, int]:
        """``(width, height)`` :meth:`decode` will return, from the header (no pixels)."""
        return imaging.probe(data, max_pixels=self.settings.max_pixels, max_side=max_side)

    def cost(self, generator: LoadedGenerator, data: bytes, width: int, height: int) -> Cost:
        """Price a normal-lane request of ``data`` decoding to ``width × height``.

        Held: the body, the decode (a JPEG decodes at up to 4× the target's area with
        draft scaling; other formats at the source's), the decoded image and the result.
        Working: the forward's host memory (:attr:`LoadedGenerator.host_bytes_per_pixel`).
        """
        pixels = width * height
        source = imaging.header_pixels(data)
        decode = min(source, 4 * pixels) if imaging.sniff(data) == "jpeg" else source
        held = len(data) + 3 * decode + 2 * 3 * pixels
        return Cost(pixels, held, int(generator.host_bytes_per_pixel * pixels))

    @asynccontextmanager
    async def admission(
        self,
        width: int,
        height: int,
        *,
        generator: LoadedGenerator | None = None,
        data: bytes = b"",
        arrival: float | None = None,
    ) -> AsyncIterator[None]:
        """Reserve a request's place in its lane for a block, or refuse it at once.

        A normal-lane image holds its :meth:`cost` in the budget (429) and its forward's
        work in :attr:`pace` (503 ``would_time_out`` when the work ahead would keep it past
        ``arrival + request_timeout_s``; no time check without ``arrival``); a large one
        (see :meth:`is_large`) its place, memory and time in the large-image lane.
        """
        flops = 0.0 if generator is None else generator.flops_per_pixel * width * height
        async with AsyncExitStack() as stack:
            if self.is_large(height, width, generator):
                assert generator is not None  # only the pixel count sends one there without
                # Taken before the decode, so a burst is refused at once; the request's
                # lane.stylize then finds its place taken (other callers take theirs there).
                self.large.check_capacity()
                footprint = await self.large.footprint(generator)
                held = self.cost(generator, data, width, height).held_bytes
                cost = self.large.cost(footprint, held, width, height)
                when = time.monotonic() if arrival is None else arrival
                stack.enter_context(self.large.admission(cost, flops, when, max(width, height)))
            else:
                cost = (
                    Cost(width * height)
                    if generator is None
                    else self.cost(generator, data, width, height)
                )
                stack.enter_context(self.budget.reserve(cost))
                if arrival is not None:
                    timeout = self.settings.request_timeout_s
                    reservation = self.pace.reserve(
                        flops, arrival + timeout, timeout, side=max(width, height)
                    )
                    stack.enter_context(reservation)
            yield

    async def decode(self, data: bytes, max_side: int) -> imaging.DecodedImage:
        """Decode request bytes in the codec pool (see :meth:`ImageCodecs.decode`)."""
        started = time.perf_counter()
        decoded = await self._codec(
            self.codecs.decode, data, max_pixels=self.settings.max_pixels, max_side=max_side
        )
        self.metrics.codec.labels(op="decode").observe(time.perf_counter() - started)
        return decoded

    async def encode(
        self, pixels: np.ndarray | torch.Tensor, fmt: str, quality: int | None
    ) -> bytes:
        """Encode pixels in the codec pool (see :meth:`ImageCodecs.encode`)."""
        started = time.perf_counter()
        data = await self._codec(self.codecs.encode, pixels, fmt, quality)
        self.metrics.codec.labels(op="encode").observe(time.perf_counter() - started)
        return data

    async def encode_spooled(
        self, pixels: np.ndarray, fmt: str, quality: int | None
    ) -> tuple[BinaryIO, int]:
        """Encode a large result into a spooled temporary file, rewound; and its size.

        A print-size output is 10–60 MB encoded. Kept in memory it would stay there for
        as long as a slow client takes to read it; on disk (past ``SPOOL_BYTES``) the
        route streams it out in chunks and the memory is bounded whatever the client.
        """
        started = time.perf_counter()
        # Not a with-block: on success the file belongs to the response, which closes it.
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, prefix="stylize-out-")  # noqa: SIM115
        try:
            size = await self._codec(imaging.encode_into, out, pixels, fmt, quality)
            out.seek(0)
        except BaseException:
            out.close()
            raise
        self.metrics.codec.labels(op="encode").observe(time.perf_counter() - started)
        return out, size

    async def generator(self, target: ServeTarget | blends.BlendTarget) -> LoadedGenerator:
        """Return the cached generator of ``target`` (loading it on a miss)."""
        return await self.cache.get(target.key)

    async def stylize(
        self,
        generator: LoadedGenerator,
        pixels: np.ndarray | torch.Tensor,
        options: BlendOptions,
        deadline: float,
        client: str = "",
        progress: StylizeProgress | None = None,
    ) -> Batched[np.ndarray | torch.Tensor]:
        """Queue one image for the device; batches with same-shape, same-model requests.

        ``pixels`` may be a device tensor (device JPEG decode); the result is then a
        device tensor too, for :meth:`encode` (see :func:`stylize_batch`). ``client``
        (a key id or an address) is whom the batcher keeps fair between. ``progress``
        (:mod:`service.runtime.progress`) hears of a large image's bands, and stops its
        forward between two bands once set to stop (a new one is made when not given):
        :class:`~service.runtime.progress.Canceled` is raised then.

        Raises:
            Overloaded: the queue is full.
            RequestTimeout: ``deadline`` (monotonic) passed while queued.
        """
        height, width = pixels.shape[:2]
        if self.is_large(height, width, generator):
            # The tiled lane works on the host, memory bounded by its tile.
            large = host_pixels(pixels)
            return await self.large.stylize(
                generator, large, options, deadline, progress or self.progress.open(None)
            )
        key = BatchKey(self.mixer.model_key(generator), height, width)  # type: ignore[arg-type]
        item = _Item(generator, pixels, options)
        return await self.batcher.submit(key, item, deadline, client=client)

    def is_large(self, height: int, width: int, generator: LoadedGenerator | None = None) -> bool:
        """Whether an image of this size goes to the large-image lane (tiled).

        Over ``tile_pixels``; or, given its generator, when its whole-image forward alone
        would take more host memory than the memory budget (``inflight_bytes``): tiled
        inference gives the same image in memory bounded by its tile.
        """
        if height * width > self.settings.tile_pixels:
            return True
        limit = self.budget.limit_bytes
        per_pixel = 0.0 if generator is None else generator.host_bytes_per_pixel
        return limit is not None and per_pixel * height * width > limit

    def forget_style(self, style_id: str) -> None:
        """Drop a (deleted) style's record and generators."""
        self.styles.invalidate(style_id)
        self.cache.discard(lambda key: blends.mentions(key, style_id))  # blends of it too

    # --- internals ------------------------------------------------------------------------

    def _device(self) -> DeviceExecutor:
        if self.executor is None:
            raise RuntimeError("the inference runtime is not started")
        return self.executor

    async def _codec(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._codec_pool is None:
            raise RuntimeError("the inference runtime is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._codec_pool, functools.partial(fn, *args, **kwargs))

    async def _load(self, key: Hashable) -> LoadedGenerator:
        if isinstance(key, blends.BlendKey):  # built from its styles' weights; served on torch
            return await self.blends.load(key, self._device(), self.device, self.host_slack)
        assert isinstance(key, ModelKey)
        # The store verifies the sha256 against the manifest (ChecksumMismatch otherwise).
        data = await anyio.to_thread.run_sync(self.store.open_weights, key.style_id, key.version)
        loaded = await self._device().run(
            load_on_device,
            key,
            data,
            self.device,
            compile_model=self.settings.torch_compile,
            dtype=self.dtype,
            slack=self.host_slack,
        )
        await self._backend_decided.wait()
        if self.backend == "onnxruntime":
            try:
                export = await onnx_export(self.store, key.style_id, key.version)
                loaded.ort = await self._device().run(
                    OrtGenerator, export.data, threads=self.settings.effective_torch_threads()
                )
                loaded.nbytes += loaded.ort.nbytes
            except Exception as exc:  # e.g. a multiscale generator: it still serves, on torch
                log.warning("%s serves on torch: no ONNX Runtime session (%s)", key, exc)
        return loaded

    async def _release(self) -> None:
        await self._device().run(release_memory, self.device)

    def _after_burst(self, peak_bytes: int) -> None:
        """Give a big burst's freed heap back to the OS (the budget's last request ended)."""
        threshold = self.settings.trim_after_bytes
        if threshold and peak_bytes >= threshold and trim.available():
            self.trims += 1
            asyncio.get_running_loop().run_in_executor(None, trim.malloc_trim)

    async def _run_batch(
        self, key: Hashable, items: Sequence[Any]
    ) -> list[np.ndarray] | list[torch.Tensor]:
        generator = self.mixer.batch_generator(items)  # one style, or one family's styles
        # Timed on the device thread as so much work: the rate time-aware admission uses.
        height, width = key.height, key.width  # type: ignore[attr-defined]
        flops = sum(i.generator.flops_per_pixel for i in items) * height * width
        return await self._device().run(
            self.pace.measure,
            flops,
            stylize_batch,
            generator,
            [i.pixels for i in items],
            [i.options for i in items],
            self.dtype,
            on_device=self.codecs.on_device,
        )
