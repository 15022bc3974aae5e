"""Start the whole local stack (``stylize up``: Redis + worker + API + demo styles) for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from redis_server import free_port


def _parents() -> dict[int, int]:
    """Return ``pid -> ppid`` of every live process (zombies excluded)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = int(fields[1])
    return table


def descendants(pid: int) -> set[int]:
    """Return the pids of every live process below ``pid`` (children, grandchildren...)."""
    parents = _parents()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def children(pid: int, marker: str) -> list[int]:
    """Return the live direct children of ``pid`` whose command line contains ``marker``."""
    found = []
    for child, parent in _parents().items():
        if parent != pid:
            continue
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(child)
    return sorted(found)


@contextmanager
def trainings_paused(launcher_pid: int) -> Iterator[int]:
    """Freeze the trainings a stack's workers run now (SIGSTOP), for a block; their count.

    For tests whose training is scenery (its bar on the page, a style to cancel): a
    100,000-step run would otherwise take a share of the CPU for the whole test. Only
    the work horses (the workers' children) stop: each worker keeps its heartbeat and
    its Redis connection, so the API sees a worker busy training, as it is. They go on
    (SIGCONT) at the end of the block, before the test deletes or cancels their style.
    """
    horses = {pid for worker in children(launcher_pid, "-m worker") for pid in descendants(worker)}
    for pid in horses:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    try:
        yield len(horses)
    finally:
        for pid in horses:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def alive(pids: set[int]) -> set[int]:
    """Return those of ``pids`` still running (not zombies)."""
    return set(_parents()) & pids


def stop_stack(process: subprocess.Popen, seen: set[int], timeout_s: float = 60) -> set[int]:
    """Stop ``stylize up`` as an operator does (SIGTERM, wait); return processes left behind.

    ``seen`` holds pids of its processes collected while it ran (orphans are no longer
    its descendants). Whatever is left is killed, so a failing test leaks nothing.
    """
    seen = seen | descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(seen)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


REPO = Path(__file__).resolve().parents[1]


def create_style(url: str, params: dict, name: str = "tiny", style: str = "starry-night") -> str:
    """Create a style through the API (a bundled style image); return its id."""
    with (REPO / "demo_styles" / style / "style.jpg").open("rb") as handle:
        created = httpx.post(
            f"{url}/styles",
            files={"image": ("s.jpg", handle, "image/jpeg")},
            data={"name": name, "params": json.dumps(params)},
            timeout=30,
        )
    assert created.status_code == 202, created.text
    return created.json()["id"]


#: The API's start-up work at test sizes: the warm-up and the pace calibration still run
#: (their code paths are under test), on 32² and 64² images instead of 256² and 512²
#: (seconds of CPU per start on a 2-core machine, and the suite starts dozens).
TINY_SERVICE_START = {"STYLIZE_WARM_SIDES": "32", "STYLIZE_PACE_CALIBRATION_SIDE": "64"}


def stack_env(**overrides: str) -> dict[str, str]:
    """The environment of a test stack: no STYLIZE_* of the caller, tiny trainings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    # Tiny trainings here; a machine without the installed corpus has only the samples.
    env.update(
        STYLIZE_DEVICE="cpu", STYLIZE_PROGRESS_INTERVAL_S="0.5", STYLIZE_MIN_CONTENT_PHOTOS="1"
    )
    # The worker's start-up speed calibration, at the small steps these tests train with
    # (the default goes up to 256 px: a minute on a busy 2-core CPU before the first job).
    env["STYLIZE_CALIBRATION_SHAPES"] = "32x1,32x4"
    # A score at the reference takes minutes on a CPU; tests/integration scores tiny runs.
    env["STYLIZE_SCORE"] = "false"
    env.update(TINY_SERVICE_START)
    if "STYLIZE_CACHE_DIR" in os.environ:
        env["STYLIZE_CACHE_DIR"] = os.environ["STYLIZE_CACHE_DIR"]
    env.update(overrides)
    return env


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Wait until the stack's ``/readyz`` answers 200; fail with its log otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail("stylize up did not become ready:\n" + log_path.read_text()[-4000:])
        time.sleep(0.5)


@contextmanager
def running_stack(
    root: Path, ready_timeout_s: float = 180, **env: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m service.cli up`` with its data under ``root/data`` on a free port.

    Yields the API's URL (once ``/readyz`` is 200) and the launcher process. On exit it
    stops the launcher gracefully (SIGTERM) and fails the test if any process of the
    stack is left behind. The launcher's output goes to ``root/stack.log``; ``env``
    overrides the stack's environment.
    """
    data = root / "data"
    port = free_port()
    log_path = root / "stack.log"
    command = [sys.executable, "-m", "service.cli", "up", "--data-dir", str(data)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=root,
            env=stack_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    seen: set[int] = set()
    try:
        wait_ready(url, process, log_path, ready_timeout_s)
        seen = descendants(process.pid)
        yield url, process
    finally:
        left = stop_stack(process, seen)
    assert not left, f"stylize up left processes behind: {sorted(left)}"
