"""The HTTP service under load, as a process of its own: ``python -m service`` on a free
port (127.0.0.1 only) against a model store, and the CPU time it and its children take.

Shared by bench_service.py, burst.py, fairness.py and streams.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its live children (``/proc``).

    The children are the HTTP processes of a ``STYLIZE_WORKERS`` > 1 server.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def running_service(
    store_url: str, device: str, env: dict[str, str], log: Path
) -> Iterator[tuple[str, int]]:
    """Run ``python -m service`` until the block exits; yield its base URL and pid once ready."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    full_env |= {
        "STYLIZE_MODEL_STORE": store_url,
        "STYLIZE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # not used here
        "STYLIZE_HOST": "127.0.0.1",
        "STYLIZE_PORT": str(port),
        "STYLIZE_DEVICE": device,
        "STYLIZE_WARM_STYLES": "bench",
        **env,
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=full_env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900  # compile warm-ups take minutes on a small CPU
        with httpx.Client(base_url=base, timeout=5) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"service exited:\n{log.read_text()[-3000:]}")
                try:
                    if probe.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("service did not become ready")
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
