"""Time-aware admission: refuse at once what would be answered past its deadline.

The budgets (:mod:`service.runtime.budget`) bound what requests in flight cost in pixels
and memory, not in time. On a slow device a 2048×1536 photo alone can take longer than
``request_timeout_s``, and a handful of them are minutes of work: every such request
waits out its deadline and gets a 504, after its bytes were read and decoded and, worst,
after its forward ran for nobody. A :class:`Pace` per lane prices each request in
seconds before it is admitted and refuses it with 503 ``would_time_out`` when it could
not be answered in time, saying what would be: a ``Retry-After`` (when the work ahead
has drained enough) and the ``max_side`` that would fit:

* **work**: a request's forward in FLOPs, ``LoadedGenerator.flops_per_pixel`` (traced on
  the meta device, :func:`stylenet.footprint.forward_flops_per_pixel`) times its pixels,
  so a wide net or a big image costs what it does;
* **rate**: the lane's measured seconds per FLOP by size class (:class:`ServiceRate`):
  every forward the lane runs is timed on its own thread (:meth:`Pace.measure`); before
  the first, the start-up calibration (:mod:`service.runtime.calibration`, a reference
  generator's forward on the device) and the warm-up stand in, so even the first request
  after a start is priced. With nothing to go by (calibration off), nothing is refused;
* **ahead**: the work of every request admitted to the lane and not answered yet, and of
  a clip's frames in flight (:meth:`Pace.hold`), less what the forward under way has
  done so far.

A request is refused when ``ahead + its own`` seconds go past its deadline; alone too,
when its own forward does. ``Retry-After`` is when, with no newcomers, the work ahead has
drained enough for a fresh request (its full timeout) to be answered in time; an image
that alone takes longer than a request may gets none (only a smaller one would help).

The pace is an estimate for refusing early, never a promise: a request admitted still
has its deadline and may still get 504. Calls happen on the event loop's thread except
:meth:`Pace.measure`, which runs on the lane's one thread; it writes figures the loop
only reads.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from service.errors import Unavailable
from service.metrics import ServiceMetrics

T = TypeVar("T")
Clock = Callable[[], float]

#: The share of the time it has that the suggested ``max_side`` is priced to take.
MARGIN = 0.8


def size_class(flops: float) -> int:
    """Return the size class of a forward of ``flops`` (classes grow by a factor of 4)."""
    return math.floor(math.log2(flops) / 2)


class ServiceRate:
    """A lane's seconds per FLOP by size class: moving averages of its measured forwards.

    Seconds per FLOP depend on a forward's size: a small one is mostly fixed costs, a
    large one outgrows the caches. So each size class (:func:`size_class`) keeps its own
    average, and a size with none is priced at the nearest smaller class measured (the
    best guess for a larger image: its per-FLOP cost does not fall once fixed costs are
    paid), else the nearest larger one, else at ``prior`` (another lane's rate; the
    large-image lane's tiled forwards cost at least the normal lane's per FLOP).
    """

    def __init__(self, weight: float = 0.2, prior: ServiceRate | None = None) -> None:
        """Average with ``weight`` on each new forward; ``prior`` prices sizes never seen."""
        self.weight = weight
        self.prior = prior
        self._rates: dict[int, float] = {}
        self._seeded: set[int] = set()  # classes priced by a seed only
        #: Forwards measured (seeds not counted; tests and diagnostics).
        self.measured = 0

    def observe(self, flops: float, seconds: float, *, seed: bool = False) -> None:
        """Add a forward of ``flops`` that took ``seconds``.

        ``seed``: a warm-up or calibration forward: it stands in for its class until the
        class's first real forward, which replaces it.
        """
        if flops <= 0 or seconds <= 0 or not math.isfinite(seconds):
            return
        rate, key = seconds / flops, size_class(flops)
        old = self._rates.get(key)
        if seed:
            if old is None or key in self._seeded:
                self._rates[key] = rate
                self._seeded.add(key)
            return
        self.measured += 1
        if old is None or key in self._seeded:
            self._rates[key] = rate
            self._seeded.discard(key)
        else:
            self._rates[key] = old + self.weight * (rate - old)

    def assume(self, seconds_per_flop: float) -> None:
        """Price every size at ``seconds_per_flop``, as if measured (tests, diagnostics)."""
        self._rates = {key: seconds_per_flop for key in range(0, 64)}
        self._seeded.clear()

    def seconds_per_flop(self, flops: float) -> float | None:
        """Seconds per FLOP of a forward of ``flops`` (None: nothing to go by)."""
        rates = self._rates.copy()  # one read: the lane's thread may add a class meanwhile
        if rates and flops > 0:
            key = size_class(flops)
            smaller = [k for k in rates if k <= key]
            return rates[max(smaller) if smaller else min(rates)]
        return None if self.prior is None else self.prior.seconds_per_flop(flops)

    def seconds(self, flops: float) -> float | None:
        """Seconds a forward of ``flops`` should take (None: nothing measured yet)."""
        if flops <= 0:
            return 0.0
        spf = self.seconds_per_flop(flops)
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
        self._held: Counter[float] = Counter()  # FLOPs of each forward held -> how many
        #: Requests (and clip batches) holding work in the lane (tests and diagnostics).
        self.holders = 0
        #: ``(started, flops)`` of the forward under way (set by its thread).
        self._running: tuple[float, float] | None = None

    @property
    def work_in_flight(self) -> float:
        """FLOPs of the requests admitted and not answered."""
        return sum(flops * n for flops, n in self._held.items())

    def ahead_seconds(self) -> float | None:
        """Seconds of work ahead of a newcomer (None: no rate to price it by)."""
        ahead = 0.0
        for flops, n in list(self._held.items()):
            seconds = self.rate.seconds(flops)
            if seconds is None:
                return None
            ahead += n * seconds
        running = self._running
        if running is not None:
            started, flops = running
            done = min(max(0.0, self.clock() - started), self.rate.seconds(flops) or 0.0)
            ahead -= done
        return max(0.0, ahead)

    def check(self, flops: float, deadline: float, timeout_s: float, side: int = 0) -> None:
        """Raise 503 ``would_time_out`` if ``flops`` cannot be answered by ``deadline``.

        ``deadline``: the request's (on :attr:`clock`); ``timeout_s``: the allowance a
        fresh request gets, which prices ``Retry-After``; ``side``: the image's longer
        side, for the ``max_side`` that would fit.
        """
        if not self.enabled:
            return
        own = self.rate.seconds(flops)
        if own is None or own <= 0:
            return  # nothing to price it by: admitted
        ahead = self.ahead_seconds() or 0.0
        left = deadline - self.clock()
        if ahead + own <= left:
            return
        if self._metrics is not None:
            self._metrics.rejected.labels(reason="would_time_out").inc()
        raise refusal(self.lane, own, ahead, left, timeout_s, side)

    @contextmanager
    def reserve(
        self, flops: float, deadline: float, timeout_s: float, side: int = 0
    ) -> Iterator[None]:
        """Hold ``flops`` in the lane for the block, or raise 503 at once (see :meth:`check`)."""
        self.check(flops, deadline, timeout_s, side)
        with self.hold(flops):
            yield

    @contextmanager
    def hold(self, flops: float) -> Iterator[None]:
        """Count ``flops`` as work ahead in the lane for the block, without a check.

        For work admitted elsewhere that runs in this lane: a clip's frames in flight.
        """
        self._held[flops] += 1
        self.holders += 1
        try:
            yield
        finally:
            self.holders -= 1
            self._held[flops] -= 1
            if self._held[flops] <= 0:
                del self._held[flops]

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


def refusal(
    lane: str, own: float, ahead: float, left: float, timeout_s: float, side: int
) -> Unavailable:
    """Make the 503 ``would_time_out`` of a request of ``own`` s behind ``ahead`` s of work.

    It says what the caller can do: retry when the work ahead has drained enough for a
    fresh request (``Retry-After``; none when the image alone takes longer than a request
    may), or send the image smaller: ``max_side``, the longer side that would fit now
    (the work of a forward goes with its pixels, the square of the side).
    """
    left = max(0.0, left)
    # The time it could have: now, what is left past the work ahead; an image that can
    # never be answered in time, a fresh request's allowance (alone, once the lane drains).
    fits = left - ahead if left > ahead else (timeout_s if own > timeout_s else 0.0)
    max_side = math.floor(side * math.sqrt(MARGIN * fits / own)) if side and fits > 0 else 0
    smaller = f"send it smaller (max_side={max_side} would fit)" if max_side >= 16 else ""
    fields: dict[str, Any] = {"max_side": max_side} if smaller else {}
    if own > timeout_s:
        # It can never be answered in time, even alone: retrying the same would not help.
        message = (
            f"this image takes about {own:.0f} s in the {lane} lane, more than the "
            f"{timeout_s:g} s a request may take; {smaller or 'send it smaller (max_side)'}"
        )
        retry: int | None = None
    else:
        # A fresh request after t seconds (nobody new meanwhile) has ahead - t before it
        # and timeout_s to go: it fits once ahead - t + own <= timeout_s.
        retry = max(1, math.ceil(max(0.0, ahead + own - timeout_s)))
        message = (
            f"about {ahead:.0f} s of work is ahead in the {lane} lane and this image takes "
            f"about {own:.0f} s: it could not be answered in the {left:.0f} s it has left; "
            f"retry in {retry} s, or {smaller or 'send a smaller image (max_side)'}"
        )
    return Unavailable(
        message,
        code="would_time_out",
        retry_after=retry,
        lane=lane,
        wait_seconds=round(ahead, 1),
        service_seconds=round(own, 1),
        seconds_left=round(left, 1),
        **fields,
    )


__all__ = ["Pace", "ServiceRate", "refusal", "size_class"]
