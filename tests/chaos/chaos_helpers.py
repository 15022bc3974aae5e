"""Bounds and timing of the chaos suite."""

from __future__ import annotations

import time

#: A hang guard, not a speed bound: a fault not repaired in this many seconds is hung.
#: The recovery times themselves are printed (``RECOVERY ...``, ``pytest -s``); they were
#: 3-40 s on a quiet 2-core machine, but the suite runs several processes at once
#: (``make test``), and a bound near the quiet figure failed on load alone.
CONVERGE_S = 240.0


def report(fault: str, seconds: float) -> None:
    """Print a measured recovery time (collected for the issue's closing note)."""
    print(f"\nRECOVERY {fault}: {seconds:.1f} s")


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.start
