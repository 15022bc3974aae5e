"""The compose stack, built and driven end to end under a real Docker engine.

``make test-deploy`` (CI runs it after ``make test``). It sets up the engine where it is
missing (``docker_engine.py``) and stand-in base images where no registry answers
(``standin_images.py``), then follows the README's commands for a CPU host in a copy of the
checkout, and speaks to the stack only through its proxy, as a client would. Each step's
duration goes to ``test-artifacts/deploy-timings.json`` (reported, never asserted).

The steps build on each other and run in file order: up, stylize, train, the proxy's
errors, scaling, restarts, a worker killed mid-training, Redis killed, a code edit.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker_engine import ensure_engine, run
from PIL import Image
from redis_server import free_port
from standin_images import ensure_base_images

from stylenet import samples

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PROJECT = "stylize-deploytest"
FILES = (
    *("-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml"),
    *("-f", "docker-compose.admin.yml"),
)
# A style trained in seconds on a CPU container.
TINY = {"iterations": 20, "image_size": 64, "style_size": 64, "width": 0.5, "batch_size": 1}


@dataclass
class Stack:
    """The running stack: its folder, proxy address, API key, and the timings so far."""

    folder: Path
    url: str
    key: str
    other_key: str
    admin_key: str
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    trained: str | None = None

    def compose(self, *args: str, timeout: float = 1800) -> str:
        done = subprocess.run(
            ["docker", "compose", "-p", PROJECT, *FILES, *args],
            cwd=self.folder, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def main_pid(self, service: str) -> int:
        (container,) = self.containers(service)
        return int(run("docker", "inspect", "-f", "{{.State.Pid}}", container).stdout)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)

    def up_until_ready(self, name: str) -> None:
        """``compose up -d``, then wait for ``/readyz`` through the proxy; timed as ``name``."""
        step = time.monotonic()
        self.compose("up", "-d")
        _wait(name, lambda: _ready(self), 600)
        self.timed(name, step)


def _wait(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 2) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last: {last!r})")


def _ready(stack: Stack) -> bool:
    with stack.client() as http:
        return http.get("/readyz").status_code == 200


def _copy_checkout(dest: Path) -> None:
    """Copy the checkout's files (tracked, and new ones git does not ignore) to ``dest``."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    started = time.monotonic()
    ensure_engine()
    built = ensure_base_images()
    folder = Path(tempfile.mkdtemp(prefix="stylize-deploy-"))
    _copy_checkout(folder)
    # The README's set-up for a CPU host with admin keys, word for word but the port and
    # the score.
    (folder / "secrets").mkdir()
    key, other_key, admin_key = (secrets.token_urlsafe(24) for _ in range(3))
    (folder / "secrets/api_keys").write_text(f"{key}\n{other_key}\n")
    (folder / "secrets/admin_keys").write_text(admin_key + "\n")
    port = free_port()
    env = (folder / ".env.example").read_text()
    env = env.replace("STYLIZE_PORT=8000", f"STYLIZE_PORT={port}")
    env = env.replace("STYLIZE_SCORE=true", "STYLIZE_SCORE=false")  # minutes of CPU each
    (folder / ".env").write_text(env)
    result = Stack(folder, f"http://127.0.0.1:{port}", key, other_key, admin_key)
    result.notes["stand-ins built"] = built
    result.timed("engine and base images", started)
    try:
        step = time.monotonic()
        result.compose("build")
        result.timed("build (compose build)", step)
        result.up_until_ready("up until ready")
        yield result
    finally:
        logs = subprocess.run(
            ["docker", "compose", "-p", PROJECT, *FILES, "logs", "--no-color", "--tail", "400"],
            cwd=folder, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "deploy-logs.txt").write_text(logs.stdout + logs.stderr)
        result.timings["total"] = round(time.monotonic() - started, 1)
        (ARTIFACTS / "deploy-timings.json").write_text(
            json.dumps({"timings_s": result.timings, **result.notes}, indent=2) + "\n"
        )
        print("\n".join(f"{k:<40} {v:>8} s" for k, v in result.timings.items()))
        if os.environ.get("STYLIZE_DEPLOY_KEEP") != "1":
            subprocess.run(
                ["docker", "compose", "-p", PROJECT, *FILES, "down", "-v", "--timeout", "20"],
                cwd=folder, capture_output=True, timeout=300,
            )  # fmt: skip
            shutil.rmtree(folder, ignore_errors=True)


def _photo_jpeg(side: int = 96) -> bytes:
    image = samples.sample("astronaut")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _style_png() -> bytes:
    image = samples.sample(samples.TEXTURE)
    image.thumbnail((64, 64))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _stylize(stack: Stack, style: str) -> Image.Image:
    with stack.client() as http:
        r = http.post(
            "/stylize",
            files={"image": ("photo.jpg", _photo_jpeg(), "image/jpeg")},
            data={"style": style, "max_side": "96"},
        )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    return Image.open(io.BytesIO(r.content))


def _status(stack: Stack, style: str) -> dict[str, Any]:
    with stack.client() as http:
        r = http.get(f"/styles/{style}")
    assert r.status_code == 200, r.text
    return r.json()


def _create_style(stack: Stack, name: str, params: dict[str, Any]) -> str:
    with stack.client() as http:
        r = http.post(
            "/styles",
            headers=stack.auth(),
            files={"image": ("style.png", _style_png(), "image/png")},
            data={"name": name, "params": json.dumps(params)},
        )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _wait_ready(stack: Stack, style: str, timeout_s: float) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        record = _status(stack, style)
        assert record["status"] not in ("failed", "canceled"), record
        return record if record["status"] == "ready" else None

    return _wait(f"style {style} ready", ready, timeout_s)


def _style_ids(stack: Stack) -> set[str]:
    with stack.client() as http:
        r = http.get("/styles", params={"limit": 100})
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


def test_the_demo_styles_stylize_through_the_proxy(stack: Stack) -> None:
    with stack.client() as http:
        items = http.get("/styles").json()["items"]
    demos = [s["id"] for s in items if s["status"] == "ready"]
    assert demos, items
    step = time.monotonic()
    assert _stylize(stack, demos[0]).size[0] == 96
    stack.timed("first stylize (demo style)", step)


def test_a_style_trained_in_the_image_reaches_ready(stack: Stack) -> None:
    step = time.monotonic()
    style = _create_style(stack, "deploy-tiny", TINY)
    _wait_ready(stack, style, 900)
    stack.timed("tiny training to ready", step)
    _stylize(stack, style)
    stack.trained = style


def _raw(stack: Stack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    port = int(stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
         b"\r\n", 414, "uri_too_long"),
        (b"GET /styles HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: " + b"a" * 20_000
         + b"\r\n\r\n", 431, "headers_too_large"),
        (b"POST /stylize HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
         b"Content-Type: image/jpeg\r\nContent-Length: 69206016\r\n\r\n", 413, "payload_too_large"),
        (b"GET /no/such/path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 404,
         "not_found"),
    ],
    ids=["malformed", "long-url", "big-header", "66MiB-body", "unknown-path"],
)  # fmt: skip
def test_every_proxy_error_is_json(stack: Stack, request_bytes: bytes, status: int, code: str):
    got, headers, body = _raw(stack, request_bytes)
    assert got == status, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body)["error"]["code"] == code


def test_keys_are_required_through_the_proxy(stack: Stack) -> None:
    with stack.client() as http:
        r = http.post("/styles", files={"image": ("s.png", _style_png(), "image/png")})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = http.post(
            "/styles",
            headers={"Authorization": "Bearer wrong"},
            files={"image": ("s.png", _style_png(), "image/png")},
        )
        assert r.status_code == 403


def test_scale_api_spreads_requests_over_replicas(stack: Stack) -> None:
    step = time.monotonic()
    stack.compose("up", "-d", "--scale", "api=2", "--no-recreate")
    _wait("two healthy api replicas", lambda: _healthy(stack, "api") == 2, 600)
    stack.timed("scale api=2 until healthy", step)
    probe = uuid.uuid4().hex
    with stack.client() as http:
        for _ in range(16):
            assert http.get("/styles", params={"probe": probe}).status_code == 200
    counts = [
        run("docker", "logs", c).stdout.count(probe) + run("docker", "logs", c).stderr.count(probe)
        for c in stack.containers("api")
    ]
    stack.notes["requests per api replica"] = counts
    assert len(counts) == 2 and all(counts) and sum(counts) == 16, counts
    stack.compose("up", "-d", "--scale", "api=1", "--no-recreate")
    _wait("one api replica", lambda: len(stack.containers("api")) == 1, 120)


def _healthy(stack: Stack, service: str) -> int:
    states = [
        run("docker", "inspect", "-f", "{{.State.Health.Status}}", c).stdout.strip()
        for c in stack.containers(service)
    ]
    return states.count("healthy")


@pytest.mark.parametrize("service", ["api", "worker", "redis", "proxy"])
def test_restarting_a_container_loses_nothing(stack: Stack, service: str) -> None:
    assert stack.trained, "needs the trained style"
    before = _style_ids(stack)
    step = time.monotonic()
    stack.compose("restart", service)
    _wait(f"ready after restarting {service}", lambda: _ready(stack), 600)
    stack.timed(f"restart {service} until ready", step)
    assert _style_ids(stack) == before
    _stylize(stack, stack.trained)


def test_down_and_up_keeps_every_style(stack: Stack) -> None:
    before = _style_ids(stack)
    step = time.monotonic()
    stack.compose("down")
    stack.timed("down", step)
    stack.up_until_ready("up again until ready")
    assert _style_ids(stack) == before


def test_worker_killed_mid_training_still_ends_ready(stack: Stack) -> None:
    params = {**TINY, "iterations": 200, "progress_every": 5, "checkpoint_every": 50}
    style = _create_style(stack, "deploy-killed", params)

    def training() -> bool:
        record = _status(stack, style)
        return (
            record["status"] == "training"
            and (record.get("progress") or {}).get("iteration", 0) >= 10
        )

    _wait("the training under way", training, 600, every_s=0.5)
    os.kill(stack.main_pid("worker"), signal.SIGKILL)  # as the OOM killer would
    step = time.monotonic()
    _wait_ready(stack, style, 1200)
    stack.timed("worker kill -9 mid-training to ready", step)
    stack.notes["killed style record"] = _status(stack, style)


def test_redis_killed_loses_no_style_and_no_queued_job(stack: Stack) -> None:
    stack.compose("stop", "worker")
    style = _create_style(stack, "deploy-queued", TINY)
    assert _status(stack, style)["status"] == "queued"
    time.sleep(2)  # appendfsync everysec: what was acknowledged a second ago is on disk
    os.kill(stack.main_pid("redis"), signal.SIGKILL)
    step = time.monotonic()
    _wait("redis restarted and healthy", lambda: _healthy(stack, "redis") == 1, 300)
    _wait("ready after redis was killed", lambda: _ready(stack), 300)
    stack.timed("redis kill -9 until ready", step)
    assert _status(stack, style)["status"] == "queued"
    assert stack.trained in _style_ids(stack)
    stack.compose("start", "worker")
    _wait_ready(stack, style, 900)


def test_only_the_owner_or_an_admin_deletes_a_style(stack: Stack) -> None:
    style = _create_style(stack, "deploy-owned", TINY)
    with stack.client() as http:
        r = http.delete(f"/styles/{style}", headers=stack.auth(stack.other_key))
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_owner", r.text
        r = http.delete(f"/styles/{style}", headers=stack.auth(stack.admin_key))
        assert r.status_code == 204, r.text
        assert http.get(f"/styles/{style}").status_code == 404


def test_no_process_was_refused_a_file(stack: Stack) -> None:
    # The runtime user must be able to read what the build baked in and write its caches.
    logs = stack.compose("logs", "--no-color", "api", "worker")
    assert "Permission denied" not in logs, [
        line for line in logs.splitlines() if "Permission denied" in line
    ][:5]


def _layers(image: str) -> list[str]:
    out = run("docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout
    return json.loads(out)


def test_a_code_edit_rebuilds_only_the_last_layers(stack: Stack) -> None:
    image = "stylize:cpu"
    before = _layers(image)
    edited = stack.folder / "service/__init__.py"
    edited.write_text(edited.read_text() + f"# deploy test edit {uuid.uuid4().hex}\n")
    step = time.monotonic()
    stack.compose("build", "api")
    stack.timed("rebuild after a service/ edit", step)
    after = _layers(image)
    # Everything up to the project's wheel is reused: at most its COPY, its install and an
    # empty WORKDIR layer are new (the venv and the assets, gigabytes, are not).
    assert after != before and len(after) == len(before)
    common = next(i for i, (a, b) in enumerate(zip(after, before, strict=True)) if a != b)
    assert common >= len(after) - 3, (common, len(after))
