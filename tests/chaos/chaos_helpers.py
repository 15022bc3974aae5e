"""Bounds and timing of the chaos suite."""

from __future__ import annotations

import time

#: Every fault must be repaired within this many seconds (the issue's "e.g. 60 s").
CONVERGE_S = 60.0


def report(fault: str, seconds: float) -> None:
    """Print a measured recovery time (collected for the issue's closing note)."""
    print(f"\nRECOVERY {fault}: {seconds:.1f} s")


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.start
