"""Several HTTP processes on one port (``STYLIZE_WORKERS=2``), as ``python -m service`` runs them.

Real processes, a real store with a trained generator and a real Redis: both processes
become ready before ``/readyz`` says so, metrics add up across them, a killed process is
replaced and the server is not ready until the replacement is warm, and SIGTERM drains
everything and leaves no shared files behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import forkserver
import httpx
import pytest
from PIL import Image
from redis_server import free_port
from service_testing import build_store, image_bytes, metric
from stack_testing import TINY_SERVICE_START, children

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    """Live HTTP processes under the server (uvicorn spawns them with multiprocessing)."""
    return children(pid, "spawn_main")


def _ready(client: httpx.Client, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = client.get("/readyz")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.2)


@pytest.fixture
def group(
    tmp_path: Path, tiny_generator_bytes: bytes, style_image: Image.Image, redis_url: str
) -> Iterator[tuple[forkserver.ForkedProcess | subprocess.Popen, str, Path]]:
    store_url = build_store(tmp_path, tiny_generator_bytes, image_bytes(style_image, "PNG"))
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STYLIZE_", "PROMETHEUS"))}
    env.update(
        STYLIZE_MODEL_STORE=store_url,
        STYLIZE_REDIS_URL=redis_url,
        STYLIZE_PORT=str(port),
        STYLIZE_DEVICE="cpu",
        STYLIZE_WORKERS="2",
        STYLIZE_WARM_STYLES="alpha",
        **TINY_SERVICE_START,
        TMPDIR=str(scratch),
    )
    log_path = tmp_path / "server.log"
    proc = forkserver.start_module("service", [], env, REPO, log_path)
    try:
        yield proc, f"http://127.0.0.1:{port}", scratch
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for child in _children(proc.pid):
            os.kill(child, signal.SIGKILL)


def test_two_processes_serve_as_one(
    group: tuple[forkserver.ForkedProcess | subprocess.Popen, str, Path], photo: Image.Image
) -> None:
    proc, base, scratch = group
    jpeg = image_bytes(photo.resize((64, 64)))
    with httpx.Client(base_url=base, timeout=30) as client:
        assert _ready(client, timeout=180)["processes"] == 2
        assert len(_children(proc.pid)) == 2
        # Each process has the edge limits (service.server), read from its environment.
        huge = httpx.get(f"{base}/healthz", headers={"X-Big": "a" * 200_000})
        assert huge.status_code == 431 and huge.json()["error"]["message"]
        for _ in range(6):  # a new connection each: the kernel spreads them over both
            response = httpx.post(
                f"{base}/stylize",
                params={"style": "alpha"},
                files={"image": ("p.jpg", jpeg, "image/jpeg")},
                headers={"Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
        for _ in range(4):  # whichever process answers, it reports the whole server
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            assert metric(text, "stylize_requests_total", route="/stylize", code="200") == 6

        victim = _children(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.5)
        response = client.get("/readyz")
        assert response.status_code == 503  # its replacement is still starting
        assert _ready(client, timeout=180)["processes"] == 2  # replaced and warm again
        assert victim not in _children(proc.pid) and len(_children(proc.pid)) == 2

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert _children(proc.pid) == []
    assert list(scratch.glob("stylize-http-*")) == []  # readiness and metrics files gone
