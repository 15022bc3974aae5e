"""Admission by cost: a per-process budget of decoded pixels in flight (normal lane).

The batcher admits requests by count (``queue_size``); a count says nothing about memory
when one request is a 64² thumbnail and the next a 2048×1536 photo. Each ``/stylize``
request of the normal lane reserves its decoded size (``width × height`` after the
``max_side`` scaling, read from the image header before any pixel is decoded) from
``inflight_pixels`` and gives it back when the request ends, however it ends (answered,
failed, timed out, client gone). When the reservation does not fit, the request is
refused at once (429 ``pixel_budget`` with ``Retry-After``) instead of queueing into a
504. An image larger than the whole budget is served alone: admitted only while nothing
else is in flight. Large-lane images (over ``tile_pixels``) have their own admission
(``large_queue_size``) and are not charged here.

All calls happen on the event loop's thread: no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service.errors import Overloaded
from service.metrics import ServiceMetrics


class PixelBudget:
    """Decoded pixels reserved by requests in flight, at most ``limit`` (see module doc)."""

    def __init__(
        self, limit: int, metrics: ServiceMetrics, retry_after: Callable[[], float]
    ) -> None:
        """Budget ``limit`` pixels; ``retry_after()`` prices a refusal's ``Retry-After``."""
        self.limit = limit
        self._metrics = metrics
        self._retry_after = retry_after
        self._used = 0
        #: Requests holding a reservation (tests and diagnostics).
        self.holders = 0

    @property
    def in_flight(self) -> int:
        """Pixels reserved now."""
        return self._used

    def fits(self, pixels: int) -> bool:
        """Whether ``pixels`` more may be reserved now (anything fits an empty budget)."""
        return self._used == 0 or self._used + pixels <= self.limit

    def check(self, pixels: int | None = None) -> None:
        """Raise :class:`Overloaded` (``pixel_budget``) if ``pixels`` do not fit now.

        ``None``: the image's size is not known yet (before the body is read); refuse
        only when not one more pixel fits.
        """
        if self.fits(1 if pixels is None else pixels):
            return
        self._metrics.rejected.labels(reason="pixel_budget").inc()
        need = "" if pixels is None else f"; this image needs {pixels}"
        fields = {} if pixels is None else {"pixels": pixels}
        raise Overloaded(
            f"{self._used} of {self.limit} decoded pixels are in flight{need}; retry later",
            code="pixel_budget",
            retry_after=self._retry_after(),
            in_flight=self._used,
            limit=self.limit,
            **fields,
        )

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` for the block (released however it exits), or raise at once."""
        self.check(pixels)
        self._used += pixels
        self.holders += 1
        try:
            yield
        finally:
            self._used -= pixels
            self.holders -= 1
