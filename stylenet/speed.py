"""A smoothed training speed, for ETAs that do not swing from report to report.

A plain "iterations in the last window / window length" rate jumps whenever another
process takes the CPU for a few seconds, a preview is made or a checkpoint written:
the ETA then reads 6 → 4 → 7 → 3 minutes. :class:`RateMeter` keeps an exponentially
weighted moving average of the rate *in time* (the weight of an observation decays
with the seconds since it, half-life ``half_life_s``), so a burst of a few seconds
moves the ETA by a fraction of the burst, and a lasting change is followed within a
few half-lives. The first step of a run (allocations, oneDNN primitive creation,
``torch.compile``) is left out of the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateMeter:
    """Exponentially weighted moving average of iterations per second.

    Args:
        half_life_s: seconds after which an observation weighs half as much.
        clock: monotonic clock (injectable for tests).
    """

    def __init__(
        self, half_life_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Start a meter; its first :meth:`tick` only sets the starting point."""
        if half_life_s <= 0:
            raise ValueError("half_life_s must be > 0")
        self.half_life_s, self.clock = half_life_s, clock
        self._rate: float | None = None
        self._last: tuple[int, float] | None = None

    def tick(self, iteration: int) -> None:
        """Record that ``iteration`` iterations are done now."""
        now = self.clock()
        if self._last is None:
            self._last = (iteration, now)
            return
        iterations, seconds = iteration - self._last[0], now - self._last[1]
        if iterations <= 0 or seconds <= 0:
            return
        self._last = (iteration, now)
        rate = iterations / seconds
        if self._rate is None:
            self._rate = rate
            return
        # The weight of the new observation grows with the time it covers: a rate held
        # for one half-life moves the average half way towards it.
        alpha = 1.0 - 0.5 ** (seconds / self.half_life_s)
        self._rate += alpha * (rate - self._rate)

    def iterations_per_s(self) -> float:
        """Return the smoothed rate (0.0 before two ticks)."""
        return self._rate or 0.0

    def eta_s(self, remaining_iterations: int) -> float:
        """Seconds until ``remaining_iterations`` more are done (inf while unknown)."""
        if remaining_iterations <= 0:
            return 0.0
        return remaining_iterations / self._rate if self._rate else math.inf


__all__ = ["RateMeter"]
