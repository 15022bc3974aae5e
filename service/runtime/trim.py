"""Give freed heap memory back to the OS after big requests (glibc's ``malloc_trim``).

A 2048×1536 forward on a CPU allocates gigabytes in many blocks; once freed, glibc keeps
much of it in its arenas (each thread has its own: the device thread, the codec pool,
the large-image lane), so the process's RSS stays near its peak long after the burst,
and an orchestrator counting RSS sees a process that never shrinks. ``malloc_trim(0)``
returns the free pages of every arena. It is called by the runtime when the memory
budget's last request ends and the burst that ended reached ``trim_after_bytes``
(:class:`~service.runtime.budget.PixelBudget`'s ``on_empty``), in a thread off the event
loop. Linux with glibc only; elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import platform
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


@functools.cache
def _glibc_trim() -> Callable[[int], int] | None:
    """``malloc_trim`` of the process's glibc, or None where there is none."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def available() -> bool:
    """Whether this process can trim its heap (Linux, glibc)."""
    return _glibc_trim() is not None


def malloc_trim() -> bool:
    """Return free heap pages to the OS; whether any were (False where unavailable)."""
    trim = _glibc_trim()
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except Exception as exc:  # never let giving memory back fail a request
        log.warning("malloc_trim failed: %s", exc)
        return False


__all__ = ["available", "malloc_trim"]
