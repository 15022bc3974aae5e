"""One listening socket per HTTP process (``SO_REUSEPORT``), so the kernel spreads connections.

uvicorn's process manager binds one socket in the parent and hands it to every process.
Each process's asyncio loop, once woken, accepts every pending connection in a loop, so
with keep-alive clients one process takes most of them: measured at start-up with 8
clients on 2 processes, 7 connections landed on one and 1 on the other, and 2 processes
served *fewer* images per second than one (bench/bench_service.py --processes). With
``SO_REUSEPORT`` each process listens on a socket of its own on the same port, and the
kernel hashes each new connection to one of them: an even spread on average, whatever
the processes are doing.

:class:`ReusePortSocket` does it without changing uvicorn's process manager: in the
parent it only *binds* (which reserves the port and reports a port in use at once, but
receives no connection: only listening sockets do), and when uvicorn sends it to a new
process (pickled, as multiprocessing does for ``spawn``) it is rebuilt there as a fresh
socket bound to the same address, which that process's server then listens on. A
process that uvicorn restarts gets a socket of its own the same way.

Linux only: elsewhere ``SO_REUSEPORT`` does not balance, and the shared socket is kept.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

#: Whether this platform balances connections over SO_REUSEPORT listeners.
BALANCES = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _bound(family: int, address: tuple[Any, ...], kind: type[socket.socket] = socket.socket) -> Any:
    """Return a TCP socket of class ``kind``, ``SO_REUSEPORT``, bound to ``address``."""
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class ReusePortSocket(socket.socket):
    """A bound, not listening ``SO_REUSEPORT`` socket that each process re-binds anew."""

    @classmethod
    def bind_to(cls, host: str, port: int) -> ReusePortSocket:
        """Bind ``host:port`` (``OSError`` if another program holds the port)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return _bound(family, (host, port), cls)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for a new process: that process gets its own socket on the same address
        # (a subclass is not matched by multiprocessing's reducer for socket.socket, which
        # would hand over this very socket).
        return _bound, (self.family, self.getsockname())


__all__ = ["BALANCES", "ReusePortSocket"]
