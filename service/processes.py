"""Several HTTP processes on one port (``STYLIZE_WORKERS``): what they share.

``python -m service`` with ``workers > 1`` runs that many uvicorn processes on one
listening socket. Each owns its inference runtime, device thread and generator cache;
what must look like one service is kept in a folder the launcher makes for the group
(``STYLIZE_PROCESS_DIR``):

- **readiness**: a process that is warm writes ``ready-<pid>``; ``/readyz`` in any process
  is 200 only when ``workers`` live processes have written theirs, so a load balancer
  never sends traffic to a host that is half warm;
- **metrics**: prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` under
  the same folder): each process writes its samples to memory-mapped files and
  ``/metrics`` in any process sums them (gauges per their ``multiprocess_mode``).

Each process listens on a socket of its own on the port (:mod:`service.listeners`), so
the kernel spreads the connections over them.

One process (the default on a CPU) uses none of this.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

METRICS_SUBDIR = "metrics"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not).

    A killed process stays a zombie until its parent (uvicorn's supervisor, which polls
    every half second) reaps it, and ``kill(pid, 0)`` still succeeds on a zombie: read its
    state where ``/proc`` exists.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # gone meanwhile; or no /proc at all (macOS): trust kill()
        return not Path("/proc/self").exists()
    except OSError:
        return True
    # Fields after the command name (which may hold spaces and parentheses): state first.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class ProcessGroup:
    """The group of HTTP processes sharing ``directory``, as one of them sees it."""

    def __init__(self, directory: Path, size: int) -> None:
        """``size``: how many processes the group should have."""
        self.directory = directory
        self.size = size
        self.pid = os.getpid()

    def mark_ready(self) -> None:
        """Record that this process is warm."""
        (self.directory / f"ready-{self.pid}").touch()

    def leave(self) -> None:
        """Forget this process (at shutdown): not ready, its live gauges dropped."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"ready-{self.pid}").unlink()
        multiprocess.mark_process_dead(self.pid, str(self.directory / METRICS_SUBDIR))

    def ready_count(self) -> int:
        """How many live processes of the group are warm (a crashed one's file is stale)."""
        count = 0
        for path in self.directory.glob("ready-*"):
            pid = int(path.name.removeprefix("ready-"))
            if _alive(pid):
                count += 1
            else:  # a process that died without leaving; its replacement writes anew
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return count

    def render_metrics(self) -> bytes:
        """All processes' metrics, summed, in the Prometheus text format."""
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.directory / METRICS_SUBDIR))
        return generate_latest(registry)


__all__ = ["METRICS_SUBDIR", "ProcessGroup"]
