"""The clip job path (issue 29): ``POST /videos`` to a real ``python -m worker`` and back.

The API runs in process on the session's redis-server; one worker process serves this
module's own videos (and training) queue on the same store. Clips are tiny (64×48, a
few frames) and the generator is the session's tiny trained one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_testing import assert_error, build_store, sse_events
from worker_harness import WorkerEnv, wait_for, worker_env

from model_store import open_store
from tests.clip_testing import clip_summary, make_clip

QUEUE = f"videos-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def store_url(store_root: Path, tiny_generator_bytes: bytes, style_png: bytes) -> str:
    return build_store(store_root, tiny_generator_bytes, style_png)


@pytest.fixture(scope="module")
def worker(
    store_root: Path, store_url: str, redis_url: str, content_dir: Path
) -> Iterator[WorkerEnv]:
    # The store's never-trained style must not be trained by the reconciler meanwhile.
    with worker_env(
        store_root, redis_url, content_dir, VIDEOS_QUEUE=QUEUE, RECONCILE_INTERVAL_S="0"
    ) as env:
        env.start_worker("--no-scheduler")
        yield env


@pytest.fixture(scope="module")
def client(
    make_client: Callable[..., AbstractContextManager[TestClient]], worker: WorkerEnv
) -> Iterator[TestClient]:
    settings = {
        "videos_queue": QUEUE,
        "video_max_frames": 10,
        "clip_batch_frames": 1,  # a progress report after every frame
        "events_poll_s": 0.02,
    }
    with make_client(**settings) as c:
        yield c


def _submit(client: TestClient, clip: bytes, name: str = "clip.mp4", **fields: str) -> Any:
    form = {"style": "alpha", **fields}
    return client.post("/videos", files={"clip": (name, clip, "video/mp4")}, data=form)


def _follow(client: TestClient, clip_id: str, worker: WorkerEnv) -> list[tuple[str, dict]]:
    deadline = time.monotonic() + 120  # guards a hang only
    while True:
        with client.stream("GET", f"/videos/{clip_id}/events") as response:
            assert response.status_code == 200
            events = sse_events("".join(response.iter_text()))
        if events and events[-1][0] == "end":
            return events
        assert time.monotonic() < deadline, worker.logs()


def _clip_files(store_url: str) -> set[str]:
    root = open_store(store_url).clips.root
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def test_a_clip_goes_through_the_job_and_comes_back_with_its_frames(
    client: TestClient, worker: WorkerEnv
) -> None:
    response = _submit(client, make_clip("mp4", frames=4, width=64, height=48))
    assert response.status_code == 202, response.text
    doc = response.json()
    assert doc["state"] == "queued" and doc["progress"]["total"] == 4
    assert response.headers["location"] == f"/videos/{doc['id']}"

    events = _follow(client, doc["id"], worker)
    docs = [data for name, data in events if name == "video"]
    assert events[-1] == ("end", {"id": doc["id"], "state": "done"}), worker.logs()
    done = [d["progress"]["done"] for d in docs]
    assert done == sorted(done)  # progress never goes back
    # The worker's progress reached the stream before the end (load, then 4 batches).
    assert any(d["state"] == "running" for d in docs), docs
    final = docs[-1]
    assert final["progress"] == {"done": 4, "total": 4, "fraction": 1.0}
    assert final["result"]["frames"] == 4 and final["result"]["media_type"] == "video/mp4"

    result = client.get(final["result"]["url"])
    assert result.status_code == 200
    assert result.headers["content-type"] == "video/mp4"
    made = clip_summary(result.content)
    assert made["frames"] == 4 and made["size"] == (64, 48)
    # A <video> element asks for ranges.
    part = client.get(final["result"]["url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100

    # Deleting a finished job takes its state and files.
    deleted = client.delete(f"/videos/{doc['id']}")
    assert deleted.json()["state"] == "deleted"
    assert_error(client.get(f"/videos/{doc['id']}"), 404, "video_not_found")
    assert doc["id"] not in _clip_files(client.app.state.settings.model_store)


def test_another_output_format_and_a_gif_in(client: TestClient, worker: WorkerEnv) -> None:
    gif = make_clip("gif", frames=3, width=64, height=48)
    response = _submit(client, gif, "clip.gif", format="webm", temporal="flow")
    assert response.status_code == 202, response.text
    events = _follow(client, response.json()["id"], worker)
    final = events[-2][1]
    assert final["state"] == "done", final
    result = client.get(final["result"]["url"])
    assert result.headers["content-type"] == "video/webm"
    assert clip_summary(result.content)["frames"] == 3


def test_over_a_limit_is_413_at_upload_and_nothing_is_stored(client: TestClient) -> None:
    before = _clip_files(client.app.state.settings.model_store)
    response = _submit(client, make_clip("mp4", frames=12, width=64, height=48))
    error = assert_error(response, 413, "clip_too_large")
    assert error["field"] == "frames" and error["limit"] == 10 and error["actual"] == 12
    assert _clip_files(client.app.state.settings.model_store) == before


def test_not_a_clip_is_refused_at_upload(client: TestClient) -> None:
    assert_error(_submit(client, b"\x00" * 64), 415, "unsupported_clip")
    assert_error(_submit(client, make_clip("mp4", frames=2), style="nope"), 404, "style_not_found")
    too_wide = _submit(client, make_clip("mp4", frames=2), max_side="5000")
    assert_error(too_wide, 422, "invalid_option")


def test_a_bad_clip_fails_with_a_clear_error_and_the_worker_goes_on(
    client: TestClient, worker: WorkerEnv
) -> None:
    # A WebM declares no frame count: it passes the upload, and decoding counts 11 > 10.
    webm = make_clip("webm", frames=12, width=64, height=48)
    response = _submit(client, webm, "long.webm")
    assert response.status_code == 202, response.text
    events = _follow(client, response.json()["id"], worker)
    final = events[-2][1]
    assert final["state"] == "failed", final
    assert final["error"]["code"] == "clip_too_large" and final["error"]["field"] == "frames"
    assert "over the limit of 10" in final["error"]["message"]
    assert_error(client.get(f"/videos/{final['id']}/result"), 409, "video_not_ready")
    assert worker.workers[0].alive()
    # The next job runs as usual.
    ok = _submit(client, make_clip("mp4", frames=2, width=64, height=48))
    assert _follow(client, ok.json()["id"], worker)[-1][1]["state"] == "done"


def test_cancel_stops_the_job_and_removes_its_files(client: TestClient, worker: WorkerEnv) -> None:
    # 10 frames at 960x720: many seconds of work on a CPU; canceled once one is done.
    clip = make_clip("mp4", frames=10, width=960, height=720)
    response = _submit(client, clip, max_side="960")
    assert response.status_code == 202, response.text
    clip_id = response.json()["id"]

    def running() -> bool:
        doc = client.get(f"/videos/{clip_id}").json()
        return doc["state"] == "running" and doc["progress"]["done"] >= 1

    wait_for(running, 120, "the job to stylize a frame")
    canceled = client.delete(f"/videos/{clip_id}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "canceled"
    events = _follow(client, clip_id, worker)
    assert events[-1][1]["state"] == "canceled"
    assert_error(client.get(f"/videos/{clip_id}/result"), 409, "video_not_ready")
    store = client.app.state.settings.model_store
    wait_for(lambda: clip_id not in _clip_files(store), 60, "the canceled clip's files to go")
    # The horse was stopped (RQ's stop command) and the worker is free for the next job.
    ok = _submit(client, make_clip("mp4", frames=2, width=64, height=48))
    assert _follow(client, ok.json()["id"], worker)[-1][1]["state"] == "done"
    assert worker.workers[0].alive()
    assert client.get(f"/videos/{clip_id}").json()["progress"]["done"] < 10
