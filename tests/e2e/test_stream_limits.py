"""Long-lived connections cannot take the service down (issue 24, item 1).

Was: 1,100 event streams from one client held every connection ``limit_concurrency``
allows, and ``/healthz``, ``/readyz`` and ``/styles`` answered 503 while they were open.
Here ``python -m service`` runs with small caps set through ``STYLIZE_*``; raw sockets
hold streams of a style that never settles (``pending``) open past them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image
from service_testing import PENDING_STYLE, build_store, image_bytes, raw_request, running_service

PER_CLIENT = 3
MAX_STREAMS = 5
CONCURRENCY = 8
KEY = "stream-test-key-1"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store_url(
    tmp_path_factory: pytest.TempPathFactory, tiny_generator_bytes: bytes, style_image: Image.Image
) -> str:
    root = tmp_path_factory.mktemp("streams")
    return build_store(root, tiny_generator_bytes, image_bytes(style_image, "PNG"))


def _serve(root: Path, store_url: str, redis_url: str, **env: str):
    return running_service(
        root,
        {
            "STYLIZE_MODEL_STORE": store_url,
            "STYLIZE_REDIS_URL": redis_url,
            "STYLIZE_API_KEYS": KEY,
            "STYLIZE_STREAMS_PER_CLIENT": str(PER_CLIENT),
            "STYLIZE_MAX_STREAMS": str(MAX_STREAMS),
            "STYLIZE_LIMIT_CONCURRENCY": str(CONCURRENCY),
            # Long enough for a slow machine to open every connection of a test.
            "STYLIZE_HEADER_TIMEOUT_S": "60",
            **env,
        },
    )


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory, store_url: str, redis_url: str) -> Iterator[int]:
    with _serve(tmp_path_factory.mktemp("one"), store_url, redis_url) as base:
        yield int(base.rsplit(":", 1)[1])


@contextmanager
def _stream(port: int, key: str | None = None) -> Iterator[tuple[int, bytes]]:
    """Open an event stream on a connection of its own; yield (status, what came first)."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = f"GET /styles/{PENDING_STYLE}/events HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                break
            head += data
        status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
        if status != 200:  # a refusal: its JSON body follows
            length = int(_error_of(head)[1].get("content-length", 0))
            while len(head.split(b"\r\n\r\n", 1)[1]) < length and (data := sock.recv(65536)):
                head += data
        yield status, head


def _hold(stack: ExitStack, port: int, key: str | None = None) -> int:
    return stack.enter_context(_stream(port, key))[0]


def _get(port: int, path: str) -> int:
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    return raw_request(port, [request]).status or 0


def _error_of(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return head.split(b"\r\n\r\n", 1)[1].decode(), headers


def test_streams_past_the_caps_are_refused_and_health_checks_answer(port: int):
    with ExitStack() as stack:
        # One client (no key): its PER_CLIENT streams, then 429.
        assert [_hold(stack, port) for _ in range(PER_CLIENT)] == [200] * PER_CLIENT
        with _stream(port) as (status, head):
            body, headers = _error_of(head)
        assert status == 429 and '"too_many_streams"' in body, head
        assert int(headers["retry-after"]) >= 1
        assert headers["content-type"] == "application/json"
        # A key counts on its own, up to the process's MAX_STREAMS: then 503.
        room = MAX_STREAMS - PER_CLIENT
        assert [_hold(stack, port, KEY) for _ in range(room)] == [200] * room
        with _stream(port, KEY) as (status, head):
            pass
        assert status == 503 and '"streams_full"' in _error_of(head)[0], head
        # MAX_STREAMS held: every other request still finds a connection.
        for path in ("/healthz", "/readyz", "/styles"):
            assert _get(port, path) == 200, path
        # The rest of the connections taken by idle sockets: the API is full (503), the
        # health checks are answered anyway.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONCURRENCY)]
        for sock in idle:
            stack.callback(sock.close)
        time.sleep(0.3)  # accepted by the server before the requests below
        assert _get(port, "/styles") == 503
        for path in ("/healthz", "/readyz"):
            assert _get(port, path) == 200, path
    # All closed: the slots come back as the server sees the disconnects.
    deadline = time.monotonic() + 30  # a hang guard
    while True:
        with _stream(port) as (status, _):
            if status == 200:
                break
        assert time.monotonic() < deadline, f"slots not given back ({status})"
        time.sleep(0.2)


def test_a_clients_limit_holds_across_http_processes(
    tmp_path: Path, store_url: str, redis_url: str
):
    # The kernel spreads connections over the two processes (SO_REUSEPORT): counted per
    # process, a client could hold twice its limit; counted in Redis, exactly its limit.
    with _serve(tmp_path, store_url, redis_url, STYLIZE_WORKERS="2") as base:
        port = int(base.rsplit(":", 1)[1])
        with ExitStack() as stack:
            statuses = [_hold(stack, port) for _ in range(2 * PER_CLIENT)]
            assert statuses.count(200) == PER_CLIENT, statuses
            assert statuses.count(429) == PER_CLIENT, statuses
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200
