"""The bundled demo styles across API starts (issue #24 item 4).

Each test gets its own store; the app starts with ``demo_styles_dir`` set, as ``stylize
up`` and the container image run it. Several API processes installing at once are real
spawned processes (``store_workers.register_demos_together``).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import store_workers

from model_store import ModelStore, forget_deletion, open_store, read_bundle
from service.demo_styles import DEFAULT_DIR

DEMOS = {style.id: style for style in read_bundle(DEFAULT_DIR)}
SPAWN = multiprocessing.get_context("spawn")


def _half_registered(store: ModelStore, style_id: str) -> None:
    """What the API left when it died registering a demo style (the disk was full).

    An earlier release created the record, then published the weights; it died between.
    """
    demo = DEMOS[style_id]
    store.create(demo.read("style_image"), name=demo.name, params=demo.params, style_id=style_id)


@pytest.fixture
def demo_store(tmp_path: Path) -> tuple[str, ModelStore]:
    url = (tmp_path / "models").as_uri()
    return url, open_store(url)


def test_an_interrupted_first_start_is_finished_at_the_next(
    make_client: Callable[..., AbstractContextManager[Any]],
    demo_store: tuple[str, ModelStore],
    photo_jpeg: bytes,
) -> None:
    url, store = demo_store
    _half_registered(store, "starry-night")
    with make_client(model_store=url, demo_styles_dir=DEFAULT_DIR) as client:
        record = client.get("/styles/starry-night").json()
        assert record["status"] == "ready", record
        assert record["current_version"] == 1
        answer = client.post(
            "/stylize",
            params={"style": "starry-night", "max_side": "48"},
            content=photo_jpeg,
            headers={"content-type": "image/jpeg"},
        )
        assert answer.status_code == 200, answer.text
    rec = store.get("starry-night")
    assert rec.bundled and [v.version for v in rec.versions] == [1]
    assert rec.version_info().metadata["demo"] is True
    # Finished from the bundled file (the worker's side, never training it, is in
    # tests/integration/training_worker/test_worker_demo_styles.py).
    assert store.open_weights("starry-night") == DEMOS["starry-night"].read("generator")


def test_a_deleted_demo_style_stays_deleted_across_starts(
    make_client: Callable[..., AbstractContextManager[Any]],
    demo_store: tuple[str, ModelStore],
) -> None:
    url, store = demo_store
    with make_client(model_store=url, demo_styles_dir=DEFAULT_DIR) as client:
        assert client.get("/styles/scream").json()["status"] == "ready"
        assert client.delete("/styles/scream").status_code == 204
    with make_client(model_store=url, demo_styles_dir=DEFAULT_DIR) as client:
        assert client.get("/styles/scream").status_code == 404
        assert client.get("/styles/starry-night").status_code == 200
        listed = {s["id"] for s in client.get("/styles").json()["items"]}
        assert "scream" not in listed and "starry-night" in listed
    # An operator can bring it back: the next start installs it again.
    assert forget_deletion(store, "scream")
    with make_client(model_store=url, demo_styles_dir=DEFAULT_DIR) as client:
        assert client.get("/styles/scream").json()["status"] == "ready"


def test_api_processes_starting_together_register_each_demo_once(
    demo_store: tuple[str, ModelStore],
) -> None:
    url, store = demo_store
    _half_registered(store, "starry-night")  # one half-registered, one missing
    workers = 3
    barrier, results = SPAWN.Barrier(workers), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=store_workers.register_demos_together,
            args=(url, str(DEFAULT_DIR), barrier, results),
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    added = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    # Each style was registered (or finished) by exactly one of them.
    assert sorted(sid for ids in added for sid in ids) == ["scream", "starry-night"]
    for style_id in ("scream", "starry-night"):
        rec = store.get(style_id)
        assert rec.status == "ready" and rec.bundled
        assert [v.version for v in rec.versions] == [1]
