"""End to end: ``python -m service`` under uvicorn as a subprocess, spoken to over HTTP.

Configured only through ``STYLIZE_*`` environment variables, like a deployment; the
store holds a real (tiny) trained generator, Redis is a real redis-server.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from service_testing import assert_error, build_store, image_bytes, metric, running_service

MAX_UPLOAD = 2_000_000


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_generator_bytes: bytes,
    style_image: Image.Image,
    redis_url: str,
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("e2e")
    store_url = build_store(root, tiny_generator_bytes, image_bytes(style_image, "PNG"))
    env = {
        "STYLIZE_MODEL_STORE": store_url,
        "STYLIZE_REDIS_URL": redis_url,
        "STYLIZE_WARM_STYLES": "alpha",
        "STYLIZE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "STYLIZE_BATCH_TIMEOUT_MS": "20",
    }
    with running_service(root, env) as base:
        yield base


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def jpeg(photo: Image.Image) -> bytes:
    return image_bytes(photo, "JPEG", quality=90)


def test_stylize_over_http(http: httpx.Client, jpeg: bytes):
    r = http.post(
        "/stylize",
        files={"image": ("photo.jpg", jpeg, "image/jpeg")},
        data={"style": "alpha", "max_side": "96"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (96, 96)
    assert r.headers["x-style-version"] == "1" and "infer;dur=" in r.headers["server-timing"]
    assert len(r.headers["x-request-id"]) == 32


def test_concurrent_clients(server: str, jpeg: bytes):
    def one(i: int) -> int:
        with httpx.Client(base_url=server, timeout=30) as client:
            r = client.post(
                "/stylize",
                params={"style": "alpha" if i % 2 else "beta", "max_side": "64", "format": "png"},
                content=jpeg,
                headers={"content-type": "image/jpeg"},
            )
            return r.status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == [200] * 16


def test_errors_are_json(http: httpx.Client, jpeg: bytes):
    r = http.post("/stylize", params={"style": "nope"}, content=jpeg)
    assert_error(r, 404, "style_not_found")
    r = http.post("/stylize", params={"style": "broken"}, content=jpeg)
    assert_error(r, 500, "weights_checksum_mismatch")
    r = http.post("/stylize", params={"style": "alpha"}, content=b"")
    assert_error(r, 400, "empty_image")
    assert http.get("/healthz").json() == {"status": "ok"}


def test_create_style_enqueues_training(http: httpx.Client, style_image: Image.Image, redis_url):
    files = {"image": ("style.png", image_bytes(style_image, "PNG"), "image/png")}
    r = http.post("/styles", files=files, data={"name": "e2e", "params": '{"iterations": 10}'})
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    with Redis.from_url(redis_url) as redis:
        job = Job.fetch(f"train-{sid}", connection=redis, serializer=JSONSerializer)
        assert job.func_name == "worker.jobs.train_style"
        assert job.args[0] == sid and job.args[1]["iterations"] == 10
    assert http.get(r.headers["location"]).json()["status"] == "queued"


def _raw_exchange(port: int, head: bytes, body: bytes = b"", close_early: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        if close_early:
            return b""
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_oversized_body_is_refused_before_it_is_sent(server: str):
    port = int(server.rsplit(":", 1)[1])
    head = (
        b"POST /stylize?style=alpha HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 500000000\r\n\r\n"
    )
    # Answered with 1 KB of 500 MB sent: a server waiting for the body would let the
    # socket's 10 s timeout fail this read.
    reply = _raw_exchange(port, head, b"\xff\xd8\xff" + b"\0" * 1000)
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "payload_too_large" and body["error"]["limit"] == MAX_UPLOAD


def test_client_disconnect_leaks_nothing(server: str, http: httpx.Client, jpeg: bytes):
    port = int(server.rsplit(":", 1)[1])
    head = (
        b"POST /stylize?style=alpha&max_side=512 HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n"
    )
    for _ in range(4):
        _raw_exchange(port, head, jpeg, close_early=True)
    deadline = time.monotonic() + 20
    while metric(http.get("/metrics").text, "stylize_queue_depth") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = http.post("/stylize", params={"style": "alpha", "max_side": "32"}, content=jpeg)
    assert r.status_code == 200


def test_metrics_and_readiness(http: httpx.Client):
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["warm_errors"] == {}
    text = http.get("/metrics").text
    assert metric(text, "stylize_requests_total", route="/stylize", code="200") >= 1
    assert metric(text, "stylize_model_cache_misses_total") >= 1
