"""Helpers shared by the service tests (integration and e2e): a store with real styles,
image bytes, and reading Prometheus metrics.

Generators come from the session's ``tiny_generator_bytes`` fixture (a real, trained
file), published through the store API like the worker would.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import forkserver
import httpx
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from model_store import open_store

REPO = Path(__file__).resolve().parents[1]

#: Styles every test store holds: two published, one with corrupted weights on disk,
#: one created and never trained.
READY_STYLES = ("alpha", "beta")
BROKEN_STYLE = "broken"
PENDING_STYLE = "pending"


def image_bytes(image: Image.Image, fmt: str = "JPEG", **save_args: object) -> bytes:
    """Encode ``image`` in ``fmt``."""
    out = io.BytesIO()
    image.save(out, fmt, **save_args)
    return out.getvalue()


def build_store(root: Path, generator: bytes, style_png: bytes) -> str:
    """Create a file store under ``root`` with the standard styles; return its URL."""
    url = (root / "models").as_uri()
    store = open_store(url)
    for sid in (*READY_STYLES, BROKEN_STYLE):
        store.create(style_png, name=f"style {sid}", style_id=sid)
        store.publish(sid, generator, metadata={"test": True}, metrics={"loss": 1.0})
    store.create(style_png, name="never trained", style_id=PENDING_STYLE)
    flip_weights_byte(root / "models", BROKEN_STYLE)
    return url


def flip_weights_byte(store_root: Path, style_id: str) -> Path:
    """Corrupt one byte in the middle of a style's weights file; return the file."""
    (path,) = (store_root / "styles" / style_id).glob("*/weights/*.safetensors")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def png_bomb(side: int = 20_000) -> bytes:
    """A valid ``side``×``side`` 1-bit PNG of all zeros: a few KB that decode to GBs."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def metric(text: str, name: str, **labels: str) -> float:
    """Sum the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


#: Host names the in-process clients send (Starlette's TestClient, httpx's ``http://t``):
#: names, so the service's DNS-rebinding check (service/hosts.py) must be told of them.
TEST_HOSTS = ["testserver", "t"]


def http_scope(
    method: str, path: str, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """An ASGI HTTP scope, to drive an app with hand-made ``receive`` messages."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers or [],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 12345),
        "state": {},
    }


def wait_ready(client: Any, timeout: float = 60.0) -> None:
    """Poll ``/readyz`` (any httpx-like client) until it answers 200."""
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.02)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a JSON error response with this status and code; return its error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@contextmanager
def running_service(root: Path, env_overrides: dict[str, str]) -> Iterator[str]:
    """Run ``python -m service`` (configured by ``STYLIZE_*`` only) until the block exits.

    Yields its base URL once ``/readyz`` answers 200; at exit, stops it with SIGTERM and
    asserts a graceful stop (lifespan finished, no traceback in its log).
    """
    from redis_server import free_port
    from stack_testing import TINY_SERVICE_START

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    env.update(
        {
            "STYLIZE_HOST": "127.0.0.1",
            "STYLIZE_PORT": str(port),
            "STYLIZE_DEVICE": "cpu",
            **TINY_SERVICE_START,
            **env_overrides,
        }
    )
    log_path = root / "server.log"
    proc = forkserver.start_module("service", [], env, REPO, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5) as probe:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    wait_ready(probe, timeout=120)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.1)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # A graceful stop: uvicorn finishes the lifespan, then re-raises the signal.
    log_text = log_path.read_text()
    assert code in (0, -signal.SIGTERM), log_text[-3000:]
    assert "Application shutdown complete" in log_text
    assert "Traceback" not in log_text


@dataclass
class RawReply:
    """What a raw-socket exchange got back: status (None: no answer), JSON body, time.

    ``sent`` counts the request bytes sent before the answer: a refusal "at once" shows as
    a small count, whatever the machine's load.
    """

    status: int | None
    headers: dict[str, str]
    body: Any
    seconds: float
    sent: int = 0


def raw_request(
    port: int, chunks: Iterable[bytes], *, pause_s: float = 0.0, wait_s: float = 10.0
) -> RawReply:
    """Send ``chunks`` over a fresh socket, ``pause_s`` apart, and read one response.

    Stops sending as soon as the server answers (or closes), so a refusal in the middle
    of a huge request is seen when it comes. ``seconds`` runs from connect to the end of
    the response (or of the wait).
    """
    started = time.monotonic()
    reply = b""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break  # answered (or closed) before the request was all sent
                time.sleep(pause_s)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
        sock.settimeout(0.1)
        while time.monotonic() < started + wait_s and not _whole_response(reply):
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            reply += data
    seconds = time.monotonic() - started
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else None
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    is_json = headers.get("content-type", "").startswith("application/json")
    try:
        document = json.loads(body) if is_json else body
    except ValueError:  # cut short (the wait ran out)
        document = body
    return RawReply(status, headers, document, seconds, sent)


def _whole_response(reply: bytes) -> bool:
    head, sep, body = reply.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def sse_events(text: str) -> list[tuple[str, dict]]:
    """The ``(event, data)`` pairs of a Server-Sent Events body (comments skipped)."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events
