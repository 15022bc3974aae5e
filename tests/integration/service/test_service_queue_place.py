"""A queued style's place on the training queue (issue 26): position, start and ready times.

Real Redis and RQ throughout; the "after one starts" test runs a real training worker.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import worker_harness
from fastapi.testclient import TestClient
from redis import Redis
from redis_server import free_port
from rq import Queue
from rq.serializers import JSONSerializer
from service_testing import TEST_HOSTS, sse_events, wait_ready
from worker_harness import TINY

from service import ServiceSettings, create_app, estimate
from stylenet import TrainParams
from stylenet.cost import SPEED_KEY, DeviceSpeed, estimate_seconds

MakeClient = Callable[..., AbstractContextManager[TestClient]]
SPEED = DeviceSpeed("cpu", ((1.0, 0.05), (700.0, 3.0)), 8.0, 1.0e9)
SMALL = {"image_size": 64, "style_size": 64, "width": 0.5}


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """Redis without a published training speed (restored afterwards)."""
    connection = Redis.from_url(redis_url)
    saved = connection.hgetall(SPEED_KEY)
    connection.delete(SPEED_KEY)
    estimate._cache.clear()
    yield connection
    connection.delete(SPEED_KEY)
    if saved:
        connection.hset(SPEED_KEY, mapping=saved)
    estimate._cache.clear()
    connection.close()


def _publish_speed(redis: Redis) -> None:
    """What a worker does once it measured its device."""
    redis.hset(SPEED_KEY, "host-queue:cpu", json.dumps(SPEED.to_dict()))
    estimate._cache.clear()


def _create(client: TestClient, style_png: bytes, params: dict) -> str:
    r = client.post(
        "/styles",
        files={"image": ("style.png", style_png, "image/png")},
        data={"name": "waiting", "params": json.dumps(params)},
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _places(client: TestClient, ids: list[str]) -> list[dict | None]:
    """The ``queue`` of each style, read in one list request (one look at the queue)."""
    r = client.get("/styles", params={"limit": 200})
    assert r.status_code == 200, r.text
    by_id = {item["id"]: item for item in r.json()["items"]}
    return [by_id[sid]["queue"] for sid in ids]


def _seconds(params: dict) -> float:
    return estimate_seconds(TrainParams.from_dict(params), SPEED)


def test_three_queued_styles_are_one_two_three(
    make_client: MakeClient, style_png: bytes, redis: Redis
) -> None:
    params = [{**SMALL, "iterations": n} for n in (50, 100, 150)]
    with make_client(training_queue=f"training-{uuid.uuid4().hex[:8]}") as client:
        ids = [_create(client, style_png, p) for p in params]
        # No worker has published its speed: positions, but no times.
        for position, sid in enumerate(ids, 1):
            got = client.get(f"/styles/{sid}").json()
            assert got["queue"] == {
                "position": position,
                "starts_in_seconds": None,
                "ready_in_seconds": None,
            }
            assert got["estimated_seconds"] is None
        _publish_speed(redis)
        seconds = [_seconds(p) for p in params]
        starts = [0.0, seconds[0], seconds[0] + seconds[1]]
        for position, (place, start, own) in enumerate(
            zip(_places(client, ids), starts, seconds, strict=True), 1
        ):
            assert place["position"] == position
            assert place["starts_in_seconds"] == pytest.approx(start, abs=0.2)
            assert place["ready_in_seconds"] == pytest.approx(start + own, abs=0.3)
        got = client.get(f"/styles/{ids[2]}").json()
        assert got["queue"] == _places(client, ids)[2]
        assert got["estimated_seconds"] == pytest.approx(seconds[2], abs=0.1)

        # The first is canceled: the others move up. A ready style has no place, nor has
        # a queued one whose job is not on the queue.
        assert client.post(f"/styles/{ids[0]}/cancel").status_code == 200
        first, second, third = _places(client, ids)
        assert first is None
        assert (second["position"], third["position"]) == (1, 2)
        assert second["starts_in_seconds"] == 0
        assert third["starts_in_seconds"] == pytest.approx(seconds[1], abs=0.2)
        assert client.get("/styles/alpha").json()["queue"] is None
        pending = client.get("/styles/pending").json()
        assert pending["status"] == "queued" and pending["queue"] is None


def test_jobs_that_vanish_while_the_queue_is_read_are_skipped(
    make_client: MakeClient, style_png: bytes, redis: Redis
) -> None:
    """A job deleted between the queue read and the job read, or half-deleted, is no 500."""
    name = f"training-{uuid.uuid4().hex[:8]}"
    with make_client(training_queue=name) as client:
        first = _create(client, style_png, {**SMALL, "iterations": 50})
        queue = Queue(name, connection=redis, serializer=JSONSerializer)
        # Ahead of it: a job id whose hash is gone, one whose hash holds only a late
        # save_meta (RQ's own fetch_many raises on that), one of data RQ cannot read.
        redis.lpush(queue.key, "train-gone", "train-meta-only", "train-garbled")
        redis.hset("rq:job:train-meta-only", "meta", b"{}")
        redis.hset("rq:job:train-garbled", mapping={"status": "queued", "data": b"\x00not json"})
        try:
            got = client.get(f"/styles/{first}")
            assert got.status_code == 200, got.text
            assert got.json()["queue"]["position"] == 2  # the garbled job counts, unpriced
            _publish_speed(redis)
            place = client.get(f"/styles/{first}").json()["queue"]
            assert place["position"] == 2 and place["starts_in_seconds"] is None
            assert client.get("/styles").status_code == 200
        finally:
            redis.delete("rq:job:train-meta-only", "rq:job:train-garbled")


def test_after_a_worker_starts_one_the_others_move_up(
    tmp_path: Path, redis_url: str, content_dir: Path, style_png: bytes, redis: Redis
) -> None:
    """A real worker takes the first training; the two behind it move up."""
    long_run = {**TINY, "iterations": 100_000, "checkpoint_every": 0}
    with worker_harness.worker_env(tmp_path, redis_url, content_dir) as env:
        settings = ServiceSettings(
            model_store=env.env["STYLIZE_MODEL_STORE"],
            redis_url=redis_url,
            training_queue=env.env["STYLIZE_TRAINING_QUEUE"],
            device="cpu",
            warm_styles=[],
            allowed_hosts=TEST_HOSTS,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            wait_ready(client)
            behind = {**TINY, "iterations": 40}
            ids = [_create(client, style_png, p) for p in (long_run, behind, behind)]
            assert [p["position"] for p in _places(client, ids)] == [1, 2, 3]
            env.start_worker()
            worker_harness.wait_for(
                lambda: (rec := env.record(ids[0])).status == "training" and rec.progress,
                timeout=120,
                what="the worker to train the first style",
                poll=0.2,
            )
            running, second, third = _places(client, ids)
            assert running is None
            assert (second["position"], third["position"]) == (1, 2)
            assert second["starts_in_seconds"] is None  # no published speed
            _publish_speed(redis)
            first_doc = client.get(f"/styles/{ids[0]}").json()
            assert first_doc["status"] == "training" and first_doc["queue"] is None
            _, second, third = _places(client, ids)
            # The second waits for the run under way (its smoothed ETA), the third for both.
            assert second["starts_in_seconds"] >= 0
            assert third["starts_in_seconds"] == pytest.approx(
                second["starts_in_seconds"] + _seconds(behind), abs=0.2
            )
            assert second["ready_in_seconds"] == pytest.approx(
                second["starts_in_seconds"] + _seconds(behind), abs=0.2
            )
            for sid in ids:
                client.post(f"/styles/{sid}/cancel")


def test_without_redis_a_queued_style_is_still_answered(make_client: MakeClient) -> None:
    with make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        got = client.get("/styles/pending")
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "queued"
        assert (got.json()["queue"], got.json()["estimated_seconds"]) == (None, None)
        listed = client.get("/styles", params={"status": "queued"})
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert "pending" in {i["id"] for i in items}
        assert all(i["queue"] is None for i in items)


def test_the_event_stream_tells_a_queued_style_its_place_as_the_queue_moves(
    make_client: MakeClient, style_png: bytes, redis: Redis
) -> None:
    _publish_speed(redis)
    queue = f"training-{uuid.uuid4().hex[:8]}"
    with make_client(training_queue=queue, events_poll_s=0.2, events_max_s=6) as client:
        ids = [_create(client, style_png, {**SMALL, "iterations": n}) for n in (50, 100)]

        def move_up() -> None:  # the style ahead leaves the queue; this one's record stays
            time.sleep(1.0)
            assert client.post(f"/styles/{ids[0]}/cancel").status_code == 200

        thread = threading.Thread(target=move_up)
        thread.start()
        # The stream ends by itself after events_max_s (a "timeout" event).
        with client.stream("GET", f"/styles/{ids[1]}/events") as r:
            assert r.status_code == 200
            text = "".join(r.iter_text())
        thread.join()
    docs = [data for name, data in sse_events(text) if name == "style"]
    assert docs and all(doc["status"] == "queued" for doc in docs)
    places = [doc["queue"] for doc in docs]
    assert places[0]["position"] == 2 and places[0]["starts_in_seconds"] > 0
    assert places[-1]["position"] == 1 and places[-1]["starts_in_seconds"] == 0
    assert len({doc["revision"] for doc in docs}) == 1  # sent for the queue, not the record
