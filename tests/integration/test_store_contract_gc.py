"""The model store contract: garbage collection of the scratch folders of runs no longer
running (on each backend: ``store_url``, ``file://`` and ``s3://`` through a moto server
process; see conftest.py) and of the file backend's orphan lock files."""

from __future__ import annotations

from pathlib import Path

from store_testing import PNG, training_style

from model_store import (
    ModelStore,
    Status,
    open_store,
)


def test_gc_removes_scratch_of_runs_no_longer_running(store: ModelStore) -> None:
    running = training_style(store)
    failed = training_style(store)
    canceled = training_style(store)
    deleted = training_style(store)
    for sid in (running, failed, canceled, deleted):
        (store.scratch_dir(sid) / "checkpoint.safetensors").write_bytes(b"x" * 100)
    store.update(failed, status=Status.FAILED, error="boom")
    store.cancel(canceled)
    # A delete whose scratch removal never happened (the process died right after).
    store.backend.delete_manifest(deleted, store.backend.read_manifest(deleted)[1])  # type: ignore[index]

    assert not [r for r in store.gc() if r.startswith("scratch/")]  # young: left alone
    removed = [r for r in store.gc(min_age_s=0) if r.startswith("scratch/")]
    assert sorted(removed) == sorted(f"scratch/{sid}" for sid in (failed, canceled, deleted))
    assert (store.scratch_dir(running) / "checkpoint.safetensors").exists()


def test_gc_removes_orphan_lock_files(tmp_path: Path) -> None:
    import fcntl
    import os

    store = open_store((tmp_path / "models").as_uri())
    live = store.create(PNG, name="live").id
    store.update(live, name="renamed")  # takes (and leaves) its lock file
    locks = tmp_path / "models" / ".locks"
    orphan, held = locks / "gone-1.lock", locks / "gone-2.lock"
    orphan.touch()  # what a delete racing with an update leaves behind
    held.touch()
    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # someone is in the middle of a write
        assert store.gc() == []  # young: left alone
        assert store.gc(min_age_s=0) == [".locks/gone-1.lock"]
    finally:
        os.close(fd)
    assert not orphan.exists() and held.exists()
    assert (locks / f"{live}.lock").exists()
    store.update(live, name="again")  # the live style's writes are unaffected
