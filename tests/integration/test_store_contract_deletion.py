"""The model store contract: deletion: during a training, after a cancel, a crash in the
middle of it, and a style created again under the same id. Every test runs on each backend
(``store_url``, ``file://`` and ``s3://`` through a moto server process; see conftest.py);
concurrency and crash tests use real processes (``spawn``), never threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import store_workers
from store_testing import PNG, SPAWN, run_in_process, training_style
from store_workers import make_weights

from model_store import (
    InvalidTransition,
    ModelStore,
    Progress,
    Status,
    StyleNotFound,
    VersionNotFound,
    open_store,
)


def test_delete_during_training_stops_the_worker(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = training_style(store)
    started = SPAWN.Event()
    worker = SPAWN.Process(
        target=store_workers.train_until_stopped, args=(store_url, str(scratch_root), sid, started)
    )
    worker.start()
    try:
        assert started.wait(30), "worker never reported progress"
        assert (scratch_root / sid / "checkpoint.safetensors").exists()
        store.delete(sid)
        worker.join(30)
    finally:
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == store_workers.STOPPED
    with pytest.raises(StyleNotFound):
        store.get(sid)
    assert store.backend.list_blobs(sid) == []
    assert not (scratch_root / sid).exists()
    assert store.list_styles().items == ()


def test_cancel_refuses_late_publish(store: ModelStore) -> None:
    sid = training_style(store)
    assert store.cancel(sid).status is Status.CANCELED
    with pytest.raises(InvalidTransition) as exc:
        store.publish(sid, make_weights(1))
    assert exc.value.canceled
    with pytest.raises(InvalidTransition):
        store.update(sid, progress=Progress(2, 100))
    assert store.get(sid).versions == ()


def test_crash_mid_delete_leaves_style_canceled(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = training_style(store)
    code = run_in_process(store_workers.crash_during_delete, store_url, str(scratch_root), sid)
    assert code == store_workers.CRASHED
    assert store.get(sid).status is Status.CANCELED  # what a polling worker sees
    store.delete(sid)
    with pytest.raises(StyleNotFound):
        store.get(sid)


def test_recreate_after_delete_starts_clean(store: ModelStore) -> None:
    sid = training_style(store, style_id="mosaic")
    store.publish(sid, make_weights(1))
    store.delete(sid)
    again = store.create(PNG, name="Mosaic again", style_id="mosaic")
    assert again.versions == ()
    with pytest.raises(VersionNotFound):
        store.open_weights("mosaic")
    assert store.style_image("mosaic") == PNG
