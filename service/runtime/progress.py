"""How far a long stylize has got, for the client that asked, and its stop switch.

A client names its request (``progress_id``, a random id it makes up) and reads
``GET /stylize/progress/{id}`` while the request runs. Large images (the tiled lane)
report the bands done of the bands their forward computes; a normal-lane image only
its state. Every large request has a stop switch, named or not: when its client goes
away (a canceled fetch), the tiled forward stops at its next band instead of running
to the end for nobody.

The board is per HTTP process (in memory): with ``STYLIZE_WORKERS`` > 1 a poll may
reach another process, which answers 404 as for an id it never saw.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

State = Literal["waiting", "running", "encoding", "done", "failed", "canceled"]
#: How long a finished request's progress stays readable.
KEEP_S = 120.0
#: At most this many requests are remembered (the oldest finished ones go first).
MAX_ENTRIES = 1000


class Canceled(Exception):
    """Raised inside the tiled forward when its request was given up."""


@dataclass
class StylizeProgress:
    """One request's progress; written by the request's lane, read by the route."""

    id: str
    state: State = "waiting"
    bands_done: int = 0
    bands_total: int | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def band(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` bands (the tiled forward's callback).

        Raises:
            Canceled: the request was given up; the forward stops here.
        """
        if self.stop.is_set():
            raise Canceled(self.id)
        if self.started is None:
            self.started = time.monotonic()
        self.state, self.bands_done, self.bands_total = "running", done, total

    def start(self) -> None:
        """Mark the request taken by its lane."""
        self.started = self.started or time.monotonic()
        self.state = "running"

    def finish(self, state: State) -> None:
        """Mark the request ended: ``done``, ``failed`` or ``canceled``."""
        if self.finished is None:
            self.state, self.finished = state, time.monotonic()

    @property
    def fraction(self) -> float | None:
        """Bands done over bands in all; None before the count is known."""
        if self.state == "done":
            return 1.0
        if not self.bands_total:
            return None
        return min(1.0, self.bands_done / self.bands_total)

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before a band is done)."""
        fraction = self.fraction
        if self.started is None or not fraction or self.finished is not None:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed * (1 - fraction) / fraction


class ProgressBoard:
    """The progress of this process's named requests, kept a while after they end."""

    def __init__(self, keep_s: float = KEEP_S, max_entries: int = MAX_ENTRIES) -> None:
        """Keep finished entries ``keep_s``; at most ``max_entries`` in all."""
        self.keep_s, self.max_entries = keep_s, max_entries
        self._entries: OrderedDict[str, StylizeProgress] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, progress_id: str | None) -> StylizeProgress:
        """Return a new entry; named (readable by the route) when ``progress_id`` is."""
        entry = StylizeProgress(progress_id or "")
        if progress_id:
            with self._lock:
                self._prune()
                self._entries.pop(progress_id, None)
                self._entries[progress_id] = entry
        return entry

    def get(self, progress_id: str) -> StylizeProgress | None:
        """Return the entry named ``progress_id``, if this process has it."""
        with self._lock:
            self._prune()
            return self._entries.get(progress_id)

    def _prune(self) -> None:
        now = time.monotonic()
        for key, entry in list(self._entries.items()):
            if entry.finished is not None and now - entry.finished > self.keep_s:
                del self._entries[key]
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
