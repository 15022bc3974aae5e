"""Child processes that die with their parent (Linux).

A child started with ``preexec_fn=die_with(os.getpid())`` gets SIGTERM when the process
that started it dies, even by ``kill -9`` (``PR_SET_PDEATHSIG``): a worker stopped during
its start-up speed calibration leaves no calibration running. (`stylize up`'s launcher
does the same for its children with its own copy: importing stylenet loads torch, which
the launcher does not need.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with(parent_pid: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the child get SIGTERM when ``parent_pid`` dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


__all__ = ["die_with"]
