"""The styles API against a real store and a real Redis (the RQ job is inspected there)."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from redis_server import free_port
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from service_testing import assert_error, image_bytes, sse_events

from model_store import ModelStore, Progress, open_store
from stylenet import TrainParams

MakeClient = Callable[..., AbstractContextManager[TestClient]]
PARAMS = {"iterations": 50, "image_size": 64, "style_size": 64, "width": 0.5}


@pytest.fixture(scope="module")
def store(store_url: str) -> ModelStore:
    return open_store(store_url)


@pytest.fixture(scope="module")
def redis(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    yield connection
    connection.close()


def _create(client: TestClient, style_png: bytes, name: str = "mosaic", **form: str):
    data = {"name": name, **form}
    return client.post("/styles", files={"image": ("style.png", style_png, "image/png")}, data=data)


def _fetch_job(redis: Redis, style_id: str) -> Job:
    return Job.fetch(f"train-{style_id}", connection=redis, serializer=JSONSerializer)


def test_create_enqueues_the_training_job(client: TestClient, style_png: bytes, redis: Redis):
    r = _create(client, style_png, params=json.dumps(PARAMS))
    assert r.status_code == 202, r.text
    body = r.json()
    sid = body["id"]
    assert r.headers["location"] == f"/styles/{sid}"
    assert body["status"] == "queued" and body["servable"] is False
    expected = TrainParams.from_dict(PARAMS).to_dict()
    assert body["params"] == expected
    assert body["links"]["events"] == f"/styles/{sid}/events"

    job = _fetch_job(redis, sid)
    assert job.func_name == "worker.jobs.train_style"
    assert list(job.args) == [sid, expected]
    assert job.origin == "training"
    assert job.timeout == client.app.state.settings.train_job_timeout_s  # type: ignore[attr-defined]
    assert job.retries_left == 2
    assert job.get_status() == JobStatus.QUEUED
    assert f"train-{sid}" in Queue("training", connection=redis).get_job_ids()
    # Stored as (zlib-compressed) JSON, never a pickle: the worker loads it as JSON.
    raw = redis.hget(job.key, "data")
    assert raw is not None
    func, _, args, _ = json.loads(zlib.decompress(raw))
    assert func == "worker.jobs.train_style" and args == [sid, expected]


def test_create_validates_before_storing(client: TestClient, style_png: bytes, store: ModelStore):
    before = len(store.list_styles(limit=1000).items)
    error = assert_error(
        _create(client, style_png, params='{"iterations": 0}'), 422, "invalid_params"
    )
    assert error["field"] == "iterations"
    error = assert_error(_create(client, style_png, params='{"bogus": 1}'), 422, "invalid_params")
    assert error["field"] == "bogus"
    for not_an_object in ("{not json", "[1, 2]"):
        r = _create(client, style_png, params=not_an_object)
        error = assert_error(r, 422, "invalid_params")
        assert error["field"] == "params"
    assert_error(_create(client, b"not an image"), 400, "not_an_image")
    assert_error(_create(client, style_png, name=""), 422, "invalid_request")
    r = client.post("/styles", data={"name": "no image"})
    assert_error(r, 422, "invalid_request")
    assert len(store.list_styles(limit=1000).items) == before


def test_redis_down_gives_503_and_leaves_no_orphan(
    make_client: MakeClient, style_png: bytes, store: ModelStore
):
    before = {s.id for s in store.list_styles(limit=1000).items}
    with make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        r = _create(client, style_png)
        error = assert_error(r, 503, "queue_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        assert "unavailable" in error["message"]
    assert {s.id for s in store.list_styles(limit=1000).items} == before


def test_get_style_shows_progress_eta_and_metrics(client: TestClient, style_png: bytes, store):
    sid = _create(client, style_png).json()["id"]
    store.update(sid, status="training", progress=Progress(25, 100, eta_s=42.5, loss=3.5))
    body = client.get(f"/styles/{sid}").json()
    assert body["status"] == "training"
    assert body["progress"] == {
        "iteration": 25,
        "total": 100,
        "fraction": 0.25,
        "eta_s": 42.5,
        "loss": 3.5,
    }
    ready = client.get("/styles/alpha").json()
    assert ready["status"] == "ready" and ready["servable"] and ready["current_version"] == 1
    assert ready["metrics"] == {"loss": 1.0}
    assert ready["versions"][0]["sha256"] and ready["versions"][0]["size"] > 0
    assert ready["links"]["style_image"] == "/styles/alpha/image"
    assert_error(client.get("/styles/nope"), 404, "style_not_found")
    assert_error(client.get("/styles/NOT..valid"), 404, "style_not_found")


def test_list_is_paginated_and_filtered(client: TestClient):
    page = client.get("/styles", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen = [s["id"] for s in page["items"]]
    while page["next"]:
        page = client.get(page["next"]).json()
        seen += [s["id"] for s in page["items"]]
    assert len(seen) == len(set(seen)) and {"alpha", "beta", "pending"} <= set(seen)
    ready = client.get("/styles", params=[("status", "ready")]).json()["items"]
    assert {s["id"] for s in ready} == {"alpha", "beta", "broken"}
    both = client.get("/styles", params=[("status", "ready"), ("status", "queued")]).json()
    assert {s["status"] for s in both["items"]} == {"ready", "queued"}
    assert_error(client.get("/styles", params={"status": "sleeping"}), 422, "invalid_request")
    assert_error(client.get("/styles", params={"limit": 0}), 422, "invalid_request")
    assert_error(client.get("/styles", params={"cursor": "garbage"}), 422, "invalid_cursor")


def test_preview_and_style_image(client: TestClient, style_png: bytes, store, photo):
    sid = _create(client, style_png).json()["id"]
    assert_error(client.get(f"/styles/{sid}/preview"), 404, "preview_not_found")
    preview = image_bytes(photo.resize((32, 32)), "PNG")
    store.set_preview(sid, preview)
    r = client.get(f"/styles/{sid}/preview")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == preview
    assert client.get(f"/styles/{sid}").json()["links"]["preview"] == f"/styles/{sid}/preview"
    # A training run's previews have their own link until the run publishes.
    assert_error(client.get(f"/styles/{sid}/training-preview"), 404, "preview_not_found")
    store.set_run_preview(sid, image_bytes(photo.resize((16, 16)), "PNG"))
    links = client.get(f"/styles/{sid}").json()["links"]
    assert links["training_preview"] == f"/styles/{sid}/training-preview"
    assert client.get(links["training_preview"]).content != preview
    assert client.get(f"/styles/{sid}/preview").content == preview
    r = client.get(f"/styles/{sid}/image")
    assert r.status_code == 200 and r.content == style_png
    assert r.headers["content-type"] == "image/png" and r.headers["etag"]


def test_delete_cancels_the_queued_job(client: TestClient, style_png: bytes, redis: Redis):
    sid = _create(client, style_png).json()["id"]
    assert client.delete(f"/styles/{sid}").status_code == 204
    assert _fetch_job(redis, sid).get_status() == JobStatus.CANCELED
    assert_error(client.get(f"/styles/{sid}"), 404, "style_not_found")
    assert_error(client.delete(f"/styles/{sid}"), 404, "style_not_found")


def test_delete_a_served_style_stops_serving_it(
    client: TestClient, store, style_png: bytes, tiny_generator_bytes: bytes, photo
):
    store.create(style_png, name="short-lived", style_id="short-lived")
    store.publish("short-lived", tiny_generator_bytes)
    data = image_bytes(photo.resize((32, 32)), "PNG")
    query = {"style": "short-lived"}
    headers = {"content-type": "image/png"}
    assert client.post("/stylize", params=query, content=data, headers=headers).status_code == 200
    assert client.delete("/styles/short-lived").status_code == 204
    r = client.post("/stylize", params=query, content=data, headers=headers)
    assert_error(r, 404, "style_not_found")


def test_train_again_while_the_current_version_serves(
    client: TestClient, store, redis: Redis, style_png: bytes, tiny_generator_bytes: bytes, photo
):
    sid = _create(client, style_png, params=json.dumps(PARAMS)).json()["id"]
    assert_error(client.post(f"/styles/{sid}/train"), 409, "not_restartable")  # queued
    # What a worker does: train, publish version 1; RQ then records the job finished.
    store.update(sid, status="training")
    store.publish(sid, tiny_generator_bytes)
    r = client.post(f"/styles/{sid}/train")
    error = assert_error(r, 409, "job_exists")  # the old job is not finished yet
    assert "queued" in error["message"] and int(r.headers["retry-after"]) >= 1
    old = _fetch_job(redis, sid)
    old.meta["stale"] = True
    old.save_meta()
    old.set_status(JobStatus.FINISHED)

    bad = client.post(f"/styles/{sid}/train", json={"params": {"image_size": 4}})
    assert_error(bad, 422, "invalid_params")
    assert_error(client.post(f"/styles/{sid}/train", json={"colour": 1}), 422, "invalid_request")
    assert store.get(sid).status == "ready"

    r = client.post(f"/styles/{sid}/train", json={"params": {**PARAMS, "iterations": 7}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/styles/{sid}" and body["links"]["train"].endswith("/train")
    expected = TrainParams.from_dict({**PARAMS, "iterations": 7}).to_dict()
    assert (body["status"], body["params"], body["current_version"]) == ("queued", expected, 1)
    job = _fetch_job(redis, sid)
    assert list(job.args) == [sid, expected] and job.get_status() == JobStatus.QUEUED
    assert "stale" not in job.meta  # a new job, nothing carried over from the old one
    # Version 1 serves during the run.
    data = image_bytes(photo.resize((32, 32)), "PNG")
    served = client.post(
        "/stylize", params={"style": sid}, content=data, headers={"content-type": "image/png"}
    )
    assert served.status_code == 200 and served.headers["x-style-version"] == "1"
    assert_error(client.post(f"/styles/{sid}/train"), 409, "not_restartable")
    assert_error(client.post("/styles/nope/train"), 404, "style_not_found")

    # Cancel the run: the style is canceled but version 1 goes on serving.
    canceled = client.post(f"/styles/{sid}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert (canceled.json()["status"], canceled.json()["servable"]) == ("canceled", True)
    assert canceled.json()["state"] == "ready · v1 (retrain canceled)"
    assert _fetch_job(redis, sid).get_status() == JobStatus.CANCELED
    again = client.post(
        "/stylize", params={"style": sid}, content=data, headers={"content-type": "image/png"}
    )
    assert again.status_code == 200 and again.headers["x-style-version"] == "1"


def test_train_again_changes_only_the_params_given(
    client: TestClient, store, redis: Redis, style_png: bytes, tiny_generator_bytes: bytes
):
    """Issue 26: "Train again" with other iterations, size or style/content balance."""
    first = {**PARAMS, "preset": "johnson", "seed": 7}
    sid = _create(client, style_png, params=json.dumps(first)).json()["id"]
    store.update(sid, status="training")
    store.publish(sid, tiny_generator_bytes)
    _fetch_job(redis, sid).set_status(JobStatus.FINISHED)
    before = store.get(sid)
    refused = [
        ({"iterations": 0}, "iterations"),
        ({"iterations": "600"}, "iterations"),  # strict: no string for a number
        ({"style_weight": -1.0}, "style_weight"),
        ({"colour": 1}, "colour"),
        # Valid alone (VGG19, the default preset's), not with this style's VGG16 preset:
        # the changes are checked merged over the last run's params.
        ({"style_layers": {"relu5_4": 1.0}}, "style_layers"),
    ]
    for params, field in refused:
        error = assert_error(
            client.post(f"/styles/{sid}/train", json={"params": params}), 422, "invalid_params"
        )
        assert error["field"] == field, (params, error)
    r = client.post(f"/styles/{sid}/train", json={"params": [1]})
    assert assert_error(r, 422, "invalid_params")["field"] == "params"
    after = store.get(sid)
    assert (after.status, after.params, after.revision) == ("ready", before.params, before.revision)

    change = {"iterations": 600, "image_size": 96, "style_weight": 5.0, "content_weight": 2.0}
    r = client.post(f"/styles/{sid}/train", json={"params": change})
    assert r.status_code == 202, r.text
    expected = TrainParams.from_dict({**first, **change}).to_dict()
    assert r.json()["params"] == expected  # the preset, seed, width... kept
    assert (expected["preset"], expected["seed"], expected["width"]) == ("johnson", 7, 0.5)
    assert list(_fetch_job(redis, sid).args) == [sid, expected]
    assert store.get(sid).params == expected
    client.post(f"/styles/{sid}/cancel")


def test_train_again_after_a_late_meta_write_of_the_deleted_job(
    client: TestClient, store, redis: Redis, style_png: bytes, tiny_generator_bytes: bytes
):
    """A hash holding ``meta`` alone (a late ``save_meta``) must not block the job's id."""
    sid = _create(client, style_png, params=json.dumps(PARAMS)).json()["id"]
    store.update(sid, status="training")
    store.publish(sid, tiny_generator_bytes)
    _fetch_job(redis, sid).delete()
    redis.hset(f"rq:job:train-{sid}", "meta", json.dumps({"progress": {"iteration": 3}}))
    r = client.post(f"/styles/{sid}/train")
    assert r.status_code == 202, r.text
    assert _fetch_job(redis, sid).get_status() == JobStatus.QUEUED
    client.post(f"/styles/{sid}/cancel")


def test_cancel_then_train_again(client: TestClient, style_png: bytes, redis: Redis):
    sid = _create(client, style_png, params=json.dumps(PARAMS)).json()["id"]
    r = client.post(f"/styles/{sid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert r.json()["links"]["cancel"] == f"/styles/{sid}/cancel"
    assert _fetch_job(redis, sid).get_status() == JobStatus.CANCELED
    assert_error(client.post(f"/styles/{sid}/cancel"), 409, "not_running")
    assert_error(client.post("/styles/nope/cancel"), 404, "style_not_found")
    # The canceled job is gone from RQ, so the style can be trained again.
    r = client.post(f"/styles/{sid}/train")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert _fetch_job(redis, sid).get_status() == JobStatus.QUEUED


def test_train_again_with_redis_down_changes_nothing(
    make_client: MakeClient, store, style_png: bytes, tiny_generator_bytes: bytes
):
    store.create(style_png, name="offline", style_id="offline", params=PARAMS)
    store.publish("offline", tiny_generator_bytes)
    before = store.get("offline")
    with make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        r = client.post("/styles/offline/train")
        assert_error(r, 503, "queue_unavailable")
        assert int(r.headers["retry-after"]) >= 1
    assert store.get("offline") == before  # still ready, version 1 serving


def test_events_follow_training_to_ready(
    client: TestClient, store, style_png: bytes, tiny_generator_bytes: bytes
):
    sid = _create(client, style_png).json()["id"]

    def worker() -> None:  # what the worker does, through the store
        for step in (1, 2):
            time.sleep(0.2)
            store.update(sid, status="training", progress=Progress(step, 2, eta_s=1.0))
        time.sleep(0.2)
        store.publish(sid, tiny_generator_bytes)

    thread = threading.Thread(target=worker)
    thread.start()
    # The stream ends by itself once the style is ready (else this read hangs, and the
    # test's timeout fails it).
    with client.stream("GET", f"/styles/{sid}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    thread.join()
    events = sse_events(text)
    statuses = [data["status"] for name, data in events if name == "style"]
    assert statuses[0] == "queued" and statuses[-1] == "ready"
    assert "training" in statuses
    assert events[-1] == ("end", {"id": sid, "status": "ready"})


def test_events_end_when_the_style_is_deleted(client: TestClient, style_png: bytes):
    # DELETE commits "canceled" before removing the style: the stream ends on either.
    sid = _create(client, style_png).json()["id"]

    def delete_soon() -> None:
        time.sleep(0.3)
        client.delete(f"/styles/{sid}")

    thread = threading.Thread(target=delete_soon)
    thread.start()
    with client.stream("GET", f"/styles/{sid}/events") as r:
        text = "".join(r.iter_text())
    thread.join()
    events = sse_events(text)
    assert events[0][0] == "style"
    assert events[-1] in (("deleted", {"id": sid}), ("end", {"id": sid, "status": "canceled"}))


def test_events_of_an_unknown_style(client: TestClient):
    assert_error(client.get("/styles/nope/events"), 404, "style_not_found")


def test_concurrent_retrains_get_one_202_and_409s_never_a_500(
    client: TestClient, store, redis: Redis, style_png: bytes, tiny_generator_bytes: bytes
):
    sid = _create(client, style_png, name="raced", params=json.dumps(PARAMS)).json()["id"]
    store.update(sid, status="training")
    store.publish(sid, tiny_generator_bytes)
    for round_ in range(12):
        # What a worker leaves behind: the run's job recorded finished, the style ready.
        _fetch_job(redis, sid).set_status(JobStatus.FINISHED)
        barrier = threading.Barrier(3)
        codes: list[tuple[int, str]] = []

        def retrain(barrier: threading.Barrier = barrier, codes: list = codes) -> None:
            barrier.wait()
            r = client.post(f"/styles/{sid}/train")
            codes.append((r.status_code, (r.json().get("error") or {}).get("code", "")))

        threads = [threading.Thread(target=retrain) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(code for code, _ in codes)
        assert statuses == [202, 409, 409], (round_, codes)
        # The winner's job is the one in the queue (nobody deleted it).
        assert _fetch_job(redis, sid).get_status() == JobStatus.QUEUED
        assert store.get(sid).status == "queued"
        # The run ends: a new version, the style ready again.
        store.update(sid, status="training")
        store.publish(sid, tiny_generator_bytes)
