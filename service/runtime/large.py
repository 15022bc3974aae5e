"""The large-image lane: one image at a time, by exact tiled inference, beside the batcher.

An image over ``tile_pixels`` (or whose whole forward alone is over the memory budget)
runs here (:func:`stylenet.tiled.forward_tiled`, memory bounded by its tile) on a thread
of its own, so small requests are never queued behind it. Admission
(:meth:`LargeLane.admission`) takes its place before the decode, so a burst is refused
at once: by count (``large_queue_size``, 429 ``large_queue_full``), by memory (its held
bytes and its tiled forward, :func:`stylenet.footprint.tiled_footprint`, in the shared
:class:`~service.runtime.budget.PixelBudget`, 429 ``memory_budget``) and by time (its
:class:`~service.runtime.pace.Pace`, 503 ``would_time_out``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

import anyio.to_thread
import numpy as np

from service.errors import Overloaded, RequestTimeout
from service.metrics import ServiceMetrics
from service.runtime.batcher import Batched
from service.runtime.budget import Cost, PixelBudget
from service.runtime.generators import BlendOptions, LoadedGenerator, stylize_large
from service.runtime.pace import Pace, ServiceRate
from service.runtime.progress import StylizeProgress
from service.settings import ServiceSettings
from stylenet.footprint import TiledFootprint, tiled_footprint

#: Set while a request holds the place :meth:`LargeLane.admission` took for it.
_ADMITTED: ContextVar[bool] = ContextVar("stylize_large_admitted", default=False)


class LargeLane:
    """The large-image lane of one runtime (see the module doc)."""

    def __init__(
        self,
        settings: ServiceSettings,
        metrics: ServiceMetrics,
        budget: PixelBudget,
        prior: ServiceRate | None = None,
    ) -> None:
        """Make a stopped lane charging ``budget``; :meth:`start` it in the event loop.

        ``prior``: the rate that prices its images until it has timed a tiled forward of
        their size (the normal lane's: a tiled forward costs at least as much per FLOP).
        """
        self.settings = settings
        self.metrics = metrics
        self.budget = budget
        rate = ServiceRate(prior=prior)
        self.pace = Pace("large-image", metrics, rate=rate, enabled=settings.deadline_admission)
        self.pool: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        #: Images waiting or running (admitted, or submitted by a caller without admission).
        self.slots = 0

    def start(self) -> None:
        """Start the lane's thread."""
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylize-large")

    def close(self) -> None:
        """Stop the thread (a running image is not waited for)."""
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    async def footprint(self, generator: LoadedGenerator) -> TiledFootprint:
        """Return the tiled forward's memory figures for ``generator`` (traced once a structure)."""
        return await anyio.to_thread.run_sync(tiled_footprint, generator.info.config)

    def cost(self, footprint: TiledFootprint, held_bytes: int, width: int, height: int) -> Cost:
        """Price an image: its held bytes, and its tiled forward while it runs."""
        working = footprint.bytes(height, width, self.settings.tile_side)
        return Cost(0, held_bytes, working, large=True)

    @contextmanager
    def admission(self, cost: Cost, flops: float, arrival: float, side: int = 0) -> Iterator[None]:
        """Hold a place, the memory and the time of one image for the block, or refuse at once.

        ``side``: the image's longer side (a refusal says which ``max_side`` would fit).
        """
        self.check_capacity()
        timeout = self.settings.large_request_timeout_s
        with ExitStack() as stack:
            stack.enter_context(self.budget.reserve(cost))
            stack.enter_context(self.pace.reserve(flops, arrival + timeout, timeout, side))
            self.slots += 1
            admitted = _ADMITTED.set(True)
            try:
                yield
            finally:
                _ADMITTED.reset(admitted)
                self.slots -= 1

    def check_capacity(self) -> None:
        """Raise :class:`Overloaded` if the lane is full."""
        if self.slots >= self.settings.large_queue_size:
            self.metrics.rejected.labels(reason="large_queue_full").inc()
            raise Overloaded(
                f"{self.slots} large images are waiting or running (more than "
                f"{self.settings.tile_pixels} pixels each); retry later",
                code="large_queue_full",
                retry_after=30,
            )

    async def stylize(
        self,
        generator: LoadedGenerator,
        pixels: np.ndarray,
        options: BlendOptions,
        deadline: float,
        progress: StylizeProgress,
    ) -> Batched[np.ndarray]:
        """Stylize one image in the lane, after those ahead of it.

        Raises:
            Overloaded: the lane is full (a caller that did not go through admission).
            RequestTimeout: ``deadline`` passed while it waited.
        """
        counted = not _ADMITTED.get()  # admitted requests hold their place already
        if counted:
            self.check_capacity()
        if self.pool is None:
            raise RuntimeError("the inference runtime is not started")
        self.slots += counted
        submitted = time.monotonic()
        flops = generator.flops_per_pixel * pixels.shape[0] * pixels.shape[1]
        try:
            async with self._lock:
                started = time.monotonic()
                if started >= deadline:
                    raise RequestTimeout("the request's deadline passed while it waited")
                progress.start()
                run = functools.partial(
                    stylize_large,
                    generator,
                    pixels,
                    options,
                    self.settings.tile_side,
                    progress=progress.band,
                )
                work = asyncio.get_running_loop().run_in_executor(
                    self.pool, functools.partial(self.pace.measure, flops, run)
                )
                try:
                    value = await work
                except asyncio.CancelledError:
                    # The client went away (or the deadline passed): the forward stops at
                    # its next band rather than running on for nobody.
                    progress.stop.set()
                    raise
                self.metrics.inference.observe(time.monotonic() - started)
            return Batched(value, 1, started - submitted, time.monotonic() - started)
        finally:
            self.slots -= counted


__all__ = ["LargeLane"]
