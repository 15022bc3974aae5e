"""How the suite shares one machine between pytest-xdist processes (``make test``).

``make test`` runs the suite in several processes (half of the tests wait on real
processes, sockets and timers, so more processes than cores keep the cores busy). Each
process and everything it starts then gets its share of the cores as torch threads:
OpenMP threads that outnumber the cores spin against each other and burn the CPU that
the other processes need. Ports come from a range of each process's own, so two
processes never pick the same "free" port between closing and binding it.
"""

from __future__ import annotations

import os
import socket

from service.settings import cpu_count as cores  # the CPUs this process may run on

#: Ports below Linux's ephemeral range (32768+), so no outgoing connection takes them.
_PORT_BASE, _PORT_SPAN = 20_000, 1_500


def worker_index() -> int | None:
    """This xdist process's number (``gw3`` → 3); ``None`` when the suite runs alone."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def worker_count() -> int:
    """How many xdist processes share the machine (1 when the suite runs alone)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def share_the_cores() -> None:
    """Give this process, and the processes it starts, its share of the cores.

    Through ``OMP_NUM_THREADS``, which torch, the worker and the service (where
    ``STYLIZE_TORCH_THREADS`` is unset) all follow; a caller's own value wins.
    """
    if worker_index() is None:
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // worker_count())))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def free_port() -> int:
    """A loopback port nothing listens on, from this process's own range under xdist."""
    index = worker_index()
    if index is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    start = _PORT_BASE + (index % 8) * _PORT_SPAN
    offset = _next_offset()
    for step in range(_PORT_SPAN):
        port = start + (offset + step) % _PORT_SPAN
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + _PORT_SPAN}")


_cursor = 0


def _next_offset() -> int:
    """Walk the range, so a port just handed out (and not yet bound) is not handed again."""
    global _cursor
    _cursor = (_cursor + 1) % _PORT_SPAN
    return _cursor
