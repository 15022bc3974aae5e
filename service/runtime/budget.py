"""Admission by cost: per-process budgets of decoded pixels and of memory in flight.

The batcher admits requests by count (``queue_size``); a count says nothing about cost
when one request is a 64² thumbnail and the next a 2048×1536 photo. Each ``/stylize``
request of the normal lane is priced before any pixel is decoded (from the image header,
after the ``max_side`` scaling) and holds its :class:`Cost` until it ends, however it
ends (answered, failed, timed out, client gone). Two budgets, both per process:

* **pixels** (``inflight_pixels``): decoded pixels in flight, a proxy for device time;
  beyond, 429 ``pixel_budget``.
* **memory** (``inflight_bytes``): host memory the requests hold. A request *holds* its
  body, its decode and its decoded image and result for its whole life, and *works* with
  a forward's activations while it runs (:func:`stylenet.footprint.forward_bytes_per_pixel`
  times the allocator's slack: ~1 KB per pixel on a CPU in float32, 3 GB for one
  2048×1536 photo, half that in bfloat16; nothing on a GPU, whose memory is the
  device's). Forwards run one batch at a time on the device thread, so the memory in
  use is every request's held bytes plus the working bytes of the ``forwards_at_once``
  largest: what a process can reach, not a sum of
  peaks that never coincide. Beyond, 429 ``memory_budget``.

Either refusal comes at once with ``Retry-After`` instead of a queue into a 504. An image
over the whole pixel budget is served alone (admitted only while nothing else is in
flight); one whose forward alone exceeds the memory budget is never run whole: the
runtime sends it to the large-image lane, whose exact tiled inference is bounded by its
tile (:meth:`service.runtime.InferenceRuntime.is_large`). Large-lane images have their
own count (``large_queue_size``) and are charged here too (``Cost.large``): their held
bytes like any request's, no pixels (they are not the batcher's device time), and their
tiled forward's working bytes (:func:`stylenet.footprint.tiled_footprint`) beside the
normal lane's, one at a time (the lane runs one image at once, alongside the batcher).

All calls happen on the event loop's thread: no lock.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from service.errors import Overloaded
from service.metrics import ServiceMetrics


@dataclass(frozen=True)
class Cost:
    """What one request costs while in flight.

    Attributes:
        pixels: decoded pixels (after the ``max_side`` scaling).
        held_bytes: host memory held from admission to the answer (body, decode,
            decoded image, result).
        working_bytes: host memory of its forward while that runs (0 on a GPU).
        large: a large-image lane request (its forward runs beside the batcher's).
    """

    pixels: int
    held_bytes: int = 0
    working_bytes: int = 0
    large: bool = False


class PixelBudget:
    """Decoded pixels and host memory reserved by requests in flight (see module doc)."""

    def __init__(
        self,
        limit: int,
        metrics: ServiceMetrics,
        retry_after: Callable[[], float],
        *,
        limit_bytes: int | None = None,
        forwards_at_once: int = 1,
        on_empty: Callable[[int], None] | None = None,
    ) -> None:
        """Budget ``limit`` pixels and ``limit_bytes`` (None: no memory budget).

        ``forwards_at_once``: requests whose forwards may run together (the batch size);
        ``retry_after()`` prices a refusal's ``Retry-After``; ``on_empty(peak)`` is
        called each time the last reservation ends, with the most bytes in flight since
        the budget was last empty (the runtime gives memory back to the OS then).
        """
        self.limit = limit
        self.limit_bytes = limit_bytes
        self.forwards_at_once = max(1, forwards_at_once)
        self._metrics = metrics
        self._retry_after = retry_after
        self._on_empty = on_empty
        self._peak = 0
        self._used = 0
        self._held = 0
        self._working: Counter[int] = Counter()
        self._large: Counter[int] = Counter()
        #: Requests holding a reservation (tests and diagnostics).
        self.holders = 0

    @property
    def in_flight(self) -> int:
        """Pixels reserved now."""
        return self._used

    @property
    def in_flight_bytes(self) -> int:
        """Host memory the requests in flight can reach now (see the module doc)."""
        return self._memory(self._held, self._working, self._large)

    def _memory(self, held: int, working: Counter[int], large: Counter[int]) -> int:
        largest = heapq.nlargest(self.forwards_at_once, working.elements())
        return held + sum(largest) + max(large, default=0)

    def fits(self, cost: Cost | int) -> bool:
        """Whether ``cost`` (or so many pixels) may be reserved now (anything fits when empty)."""
        return self._refusal(_cost(cost)) is None

    def _refusal(self, cost: Cost) -> str | None:
        if self.holders == 0:
            return None
        if self._used + cost.pixels > self.limit:
            return "pixel_budget"
        if self.limit_bytes is not None:
            one = Counter({cost.working_bytes: 1})
            working, large = self._working, self._large
            if cost.large:
                large = large + one
            else:
                working = working + one
            if self._memory(self._held + cost.held_bytes, working, large) > self.limit_bytes:
                return "memory_budget"
        return None

    def check(self, cost: Cost | int | None = None) -> None:
        """Raise :class:`Overloaded` (``pixel_budget``, ``memory_budget``) if ``cost`` won't fit.

        ``None``: the image's size is not known yet (before the body is read); refuse
        only when not one more pixel, or byte, fits.
        """
        probe = Cost(1, 1) if cost is None else _cost(cost)
        code = self._refusal(probe)
        if code is None:
            return
        self._metrics.rejected.labels(reason=code).inc()
        fields: dict[str, int] = {}
        if code == "pixel_budget":
            what = f"{self._used} of {self.limit} decoded pixels are in flight"
            fields |= {"in_flight": self._used, "limit": self.limit}
            if cost is not None:
                what += f"; this image needs {probe.pixels}"
                fields["pixels"] = probe.pixels
        else:
            limit = self.limit_bytes or 0
            what = f"{self.in_flight_bytes} of {limit} bytes of memory are in flight"
            fields |= {"in_flight_bytes": self.in_flight_bytes, "limit_bytes": limit}
            if cost is not None:
                need = probe.held_bytes + probe.working_bytes
                what += f"; this image needs up to {need}"
                fields["bytes"] = need
        raise Overloaded(
            f"{what}; retry later", code=code, retry_after=self._retry_after(), **fields
        )

    @contextmanager
    def reserve(self, cost: Cost | int) -> Iterator[None]:
        """Hold ``cost`` (or so many pixels) for the block (released however it exits)."""
        cost = _cost(cost)
        self.check(cost)
        working = self._large if cost.large else self._working
        self._used += cost.pixels
        self._held += cost.held_bytes
        working[cost.working_bytes] += 1
        self.holders += 1
        self._peak = max(self._peak, self.in_flight_bytes)
        try:
            yield
        finally:
            self._used -= cost.pixels
            self._held -= cost.held_bytes
            working[cost.working_bytes] -= 1
            if not working[cost.working_bytes]:
                del working[cost.working_bytes]
            self.holders -= 1
            if self.holders == 0:
                peak, self._peak = self._peak, 0
                if self._on_empty is not None:
                    self._on_empty(peak)


def _cost(cost: Cost | int) -> Cost:
    return Cost(cost) if isinstance(cost, int) else cost


__all__ = ["Cost", "PixelBudget"]
