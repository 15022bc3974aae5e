"""Start the whole local stack (``stylize up``: Redis + worker + API + demo styles) for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from redis_server import free_port


@contextmanager
def running_stack(
    root: Path, ready_timeout_s: float = 180, env_overrides: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python -m service.cli up`` with its data under ``root/data`` on a free port.

    Yields the API's URL (once ``/readyz`` is 200) and the launcher process; kills it on
    exit if it still runs. The launcher's output goes to ``root/stack.log``;
    ``env_overrides`` are extra ``STYLIZE_*`` settings.
    """
    data = root / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    # Tiny trainings here; a machine without the installed corpus has only the samples.
    env.update(
        STYLIZE_DEVICE="cpu", STYLIZE_PROGRESS_INTERVAL_S="0.5", STYLIZE_MIN_CONTENT_PHOTOS="1"
    )
    # The worker's start-up speed calibration, at the small steps these tests train with
    # (the default goes up to 256 px: a minute on a busy 2-core CPU before the first job).
    env["STYLIZE_CALIBRATION_SHAPES"] = "32x1,32x4"
    if "STYLIZE_CACHE_DIR" in os.environ:
        env["STYLIZE_CACHE_DIR"] = os.environ["STYLIZE_CACHE_DIR"]
    env.update(env_overrides or {})
    log_path = root / "stack.log"
    command = [sys.executable, "-m", "service.cli", "up", "--data-dir", str(data)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("stylize up did not become ready:\n" + log_path.read_text()[-4000:])
            time.sleep(0.5)
        yield url, process
    finally:
        if process.poll() is None:
            # Ctrl-C, as a person stops it: the launcher stops Redis, the worker (and its
            # work horse) and the API. A plain kill would leave them running, orphaned.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
