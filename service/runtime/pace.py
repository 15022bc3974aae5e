"""Time-aware admission: refuse at once what the work ahead would keep past its deadline.

The budgets (:mod:`service.runtime.budget`) bound what requests in flight cost in pixels
and memory, not in time. On a slow device a handful of 2048×1536 photos is minutes of
work: every request admitted behind them waits out its ``request_timeout_s`` and gets a
504, after its bytes were read and decoded and, worst, after its forward ran for nobody.
A :class:`Pace` per lane prices each request in seconds before it is admitted and
refuses it with 503 ``would_time_out`` and a ``Retry-After`` when it could not be
answered in time:

* **work**: a request's forward in FLOPs, ``LoadedGenerator.flops_per_pixel`` (traced on
  the meta device, :func:`stylenet.footprint.forward_flops_per_pixel`) times its pixels,
  so a wide net or a big image costs what it does;
* **rate**: the lane's measured seconds per FLOP (:class:`ServiceRate`): every forward
  the lane runs is timed on its own thread (:meth:`Pace.measure`), seeded by the warm-up;
  no measurement yet, no refusal;
* **ahead**: the work of every request admitted to the lane and not answered yet, less
  what the forward under way has done so far.

A request is refused when something is ahead and ``ahead + its own`` seconds go past
its deadline. A lane with nothing in flight admits anything: a lone request is never
refused on an estimate (it is also what keeps the rate measured). ``Retry-After`` is
when, with no newcomers, the work ahead has drained enough for a fresh request (its
full timeout) to be answered in time.

The pace is an estimate for refusing early, never a promise: a request admitted still
has its deadline and may still get 504. Calls happen on the event loop's thread except
:meth:`Pace.measure`, which runs on the lane's one thread; it writes two floats the loop
only reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from service.errors import Unavailable
from service.metrics import ServiceMetrics

T = TypeVar("T")
Clock = Callable[[], float]


class ServiceRate:
    """A lane's seconds per FLOP: a moving average of its measured forwards."""

    def __init__(self, weight: float = 0.2) -> None:
        """Average with ``weight`` on each new forward."""
        self.weight = weight
        self.seconds_per_flop: float | None = None
        self._seeded_only = False
        #: Forwards measured (seeds not counted; tests and diagnostics).
        self.measured = 0

    def observe(self, flops: float, seconds: float, *, seed: bool = False) -> None:
        """Add a forward of ``flops`` that took ``seconds``.

        ``seed``: a warm-up forward, whose one-off costs make it slow: it stands in until
        the first real forward, which replaces it.
        """
        if flops <= 0 or seconds <= 0 or not math.isfinite(seconds):
            return
        rate = seconds / flops
        old = self.seconds_per_flop
        if seed:
            if old is None or self._seeded_only:
                self.seconds_per_flop, self._seeded_only = rate, True
            return
        self.measured += 1
        if old is None or self._seeded_only:
            self.seconds_per_flop, self._seeded_only = rate, False
        else:
            self.seconds_per_flop = old + self.weight * (rate - old)

    def seconds(self, flops: float) -> float | None:
        """Seconds a forward of ``flops`` should take (None: nothing measured yet)."""
        spf = self.seconds_per_flop
        return None if spf is None else flops * spf


class Pace:
    """The work in flight in one lane, priced in seconds (see the module doc)."""

    def __init__(
        self,
        lane: str,
        metrics: ServiceMetrics | None = None,
        *,
        rate: ServiceRate | None = None,
        enabled: bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        """Pace the ``lane`` (a name for messages); ``enabled=False`` measures, never refuses."""
        self.lane = lane
        self.rate = rate or ServiceRate()
        self.enabled = enabled
        self.clock = clock
        self._metrics = metrics
        self._work = 0.0
        #: Requests holding a reservation (tests and diagnostics).
        self.holders = 0
        #: ``(started, flops)`` of the forward under way (set by its thread).
        self._running: tuple[float, float] | None = None

    @property
    def work_in_flight(self) -> float:
        """FLOPs of the requests admitted and not answered."""
        return self._work

    def ahead_seconds(self) -> float | None:
        """Seconds of work ahead of a newcomer (None: no rate measured yet)."""
        ahead = self.rate.seconds(self._work)
        if ahead is None:
            return None
        running = self._running
        if running is not None:
            started, flops = running
            done = min(max(0.0, self.clock() - started), self.rate.seconds(flops) or 0.0)
            ahead -= done
        return max(0.0, ahead)

    def check(self, flops: float, deadline: float, timeout_s: float) -> None:
        """Raise 503 ``would_time_out`` if ``flops`` cannot be answered by ``deadline``.

        ``deadline``: the request's (on :attr:`clock`); ``timeout_s``: the allowance a
        fresh request gets, which prices ``Retry-After``.
        """
        if not self.enabled or self.holders == 0:
            return
        ahead, own = self.ahead_seconds(), self.rate.seconds(flops)
        if ahead is None or own is None or ahead <= 0:
            return
        left = deadline - self.clock()
        if ahead + own <= left:
            return
        # A fresh request after t seconds (nobody new meanwhile) has ahead - t before it
        # and timeout_s to go: it fits once ahead - t + own <= timeout_s, or the lane is empty.
        retry = max(1, math.ceil(min(ahead, max(0.0, ahead + own - timeout_s))))
        if self._metrics is not None:
            self._metrics.rejected.labels(reason="would_time_out").inc()
        raise Unavailable(
            f"about {ahead:.0f} s of work is ahead in the {self.lane} lane and this image "
            f"takes about {own:.0f} s: it could not be answered in the {max(0.0, left):.0f} s "
            f"it has left; retry in {retry} s, or send a smaller image (max_side)",
            code="would_time_out",
            retry_after=retry,
            lane=self.lane,
            wait_seconds=round(ahead, 1),
            service_seconds=round(own, 1),
            seconds_left=round(max(0.0, left), 1),
        )

    @contextmanager
    def reserve(self, flops: float, deadline: float, timeout_s: float) -> Iterator[None]:
        """Hold ``flops`` in the lane for the block, or raise 503 at once (see :meth:`check`)."""
        self.check(flops, deadline, timeout_s)
        self._work += flops
        self.holders += 1
        try:
            yield
        finally:
            self.holders -= 1
            self._work = 0.0 if self.holders == 0 else self._work - flops

    def measure(self, flops: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (on the lane's thread), timing it as ``flops`` of work.

        Only a forward that returns is measured: one that failed or was stopped early
        says nothing about the rate.
        """
        started = self.clock()
        self._running = (started, flops)
        try:
            value = fn(*args, **kwargs)
            self.rate.observe(flops, self.clock() - started)
            return value
        finally:
            self._running = None


__all__ = ["Pace", "ServiceRate"]
