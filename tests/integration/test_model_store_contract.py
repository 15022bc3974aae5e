"""One contract suite for every model store backend (``file://`` and ``s3://``).

Every test receives ``store_url`` parametrized over both backends (see conftest.py); the
S3 one talks HTTP to a moto server process. Concurrency and crash tests use real
processes (``spawn``), never threads.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import store_workers
from store_workers import make_weights

from model_store import (
    ChecksumMismatch,
    CorruptRecord,
    InvalidCursor,
    InvalidStyleId,
    InvalidTransition,
    InvalidWeights,
    ModelStore,
    PreviewNotFound,
    Progress,
    Status,
    StyleExists,
    StyleNotFound,
    VersionNotFound,
    open_store,
)
from model_store.content import sha256_hex

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 32
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def store(store_url: str, scratch_root: Path) -> ModelStore:
    return open_store(store_url, scratch_root=scratch_root)


def _training(store: ModelStore, **kwargs: object) -> str:
    rec = store.create(PNG, name="Mosaic", params={"iterations": 100}, **kwargs)  # type: ignore[arg-type]
    store.update(rec.id, status=Status.TRAINING, progress=Progress(0, 100))
    return rec.id


def _run(target: Callable[..., object], *args: object, timeout: float = 60) -> int:
    proc = SPAWN.Process(target=target, args=args)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"{target} did not finish in {timeout}s")
    assert proc.exitcode is not None
    return proc.exitcode


# --- round trips -------------------------------------------------------------------------


def test_create_get_and_style_image_round_trip(store: ModelStore) -> None:
    rec = store.create(JPEG, name="Starry night", params={"style_weight": 1e5})
    got = store.get(rec.id)
    assert got == rec
    assert got.status is Status.QUEUED
    assert got.name == "Starry night"
    assert got.params == {"style_weight": 1e5}
    assert got.current_version is None
    assert not got.servable
    assert got.style_image.content_type == "image/jpeg"
    assert store.style_image(rec.id) == JPEG
    with pytest.raises(VersionNotFound):
        store.open_weights(rec.id)
    with pytest.raises(PreviewNotFound):
        store.preview(rec.id)


def test_client_chosen_id_is_unique(store: ModelStore) -> None:
    rec = store.create(PNG, name="Mosaic", style_id="mosaic")
    assert rec.id == "mosaic"
    with pytest.raises(StyleExists) as exc:
        store.create(PNG, name="Other", style_id="mosaic")
    assert exc.value.style_id == "mosaic"
    assert store.get("mosaic").name == "Mosaic"


def test_progress_publish_versions_and_preview(store: ModelStore) -> None:
    sid = _training(store)
    rec = store.update(sid, progress=Progress(50, 100, eta_s=12.5))
    assert rec.progress == Progress(50, 100, 12.5)
    assert store.get(sid).progress == Progress(50, 100, 12.5)

    w1, w2 = make_weights(1), make_weights(2)
    v1 = store.publish(sid, w1, metadata={"arch": "residual"}, metrics={"val_loss": 1.5})
    assert (v1.version, v1.size, v1.metadata, v1.metrics) == (
        1,
        len(w1),
        {"arch": "residual"},
        {"val_loss": 1.5},
    )
    rec = store.get(sid)
    assert rec.status is Status.READY
    assert rec.current_version == 1
    assert rec.metrics == {"val_loss": 1.5}

    # Retrain: the previous version keeps serving until the new one is published.
    store.update(sid, status=Status.TRAINING)
    assert store.get(sid).current_version == 1
    assert store.open_weights(sid) == w1
    v2 = store.publish(sid, w2)
    assert v2.version == 2
    assert store.open_weights(sid) == w2
    assert store.open_weights(sid, 1) == w1
    with pytest.raises(VersionNotFound):
        store.open_weights(sid, 3)

    store.set_preview(sid, PNG)
    assert store.preview(sid) == PNG
    store.set_preview(sid, JPEG)
    assert store.preview(sid) == JPEG
    assert store.get(sid).preview.content_type == "image/jpeg"  # type: ignore[union-attr]


def test_a_runs_preview_becomes_the_picture_only_when_it_publishes(store: ModelStore) -> None:
    sid = _training(store)
    store.set_run_preview(sid, PNG)  # the first run's preview
    assert store.run_preview(sid) == PNG
    with pytest.raises(PreviewNotFound):
        store.preview(sid)  # nothing published yet: no picture
    store.publish(sid, make_weights(1))
    assert store.preview(sid) == PNG
    with pytest.raises(PreviewNotFound):
        store.run_preview(sid)  # the run is over

    # A retrain that is canceled leaves the picture as it was; a new run starts clean.
    store.restart(sid, {"iterations": 100})
    store.set_run_preview(sid, JPEG)
    store.cancel(sid)
    rec = store.get(sid)
    assert (rec.status, rec.current_version) == (Status.CANCELED, 1)
    assert store.preview(sid) == PNG and store.run_preview(sid) == JPEG
    assert rec.run_preview is not None and rec.run_preview.name in rec.blob_names()  # kept by gc
    store.restart(sid, {"iterations": 100})
    with pytest.raises(PreviewNotFound):
        store.run_preview(sid)
    # A run without previews publishes: the picture stays.
    store.update(sid, status=Status.TRAINING)
    store.publish(sid, make_weights(2))
    assert store.preview(sid) == PNG


def test_publish_keeps_the_newest_versions_and_gc_removes_the_rest(store: ModelStore) -> None:
    sid = _training(store)
    for n in (1, 2, 3):
        store.update(sid, status=Status.TRAINING)
        store.publish(sid, make_weights(n), keep_versions=2)
    rec = store.get(sid)
    assert ([v.version for v in rec.versions], rec.current_version) == ([2, 3], 3)
    with pytest.raises(VersionNotFound):
        store.open_weights(sid, 1)
    removed = store.gc(min_age_s=0)
    assert [r for r in removed if r.startswith(f"{sid}/")] == [
        f"{sid}/{rec.incarnation}/weights/{sha256_hex(make_weights(1))}.safetensors"
    ]
    assert store.open_weights(sid, 2) == make_weights(2)
    with pytest.raises(ValueError):
        store.publish(sid, make_weights(4), keep_versions=0)


def test_failure_reason_and_transitions(store: ModelStore) -> None:
    sid = _training(store)
    rec = store.update(sid, status="failed", error="CUDA out of memory")
    assert (rec.status, rec.error) == (Status.FAILED, "CUDA out of memory")
    with pytest.raises(InvalidTransition):
        store.update(sid, progress=Progress(1, 100))
    rec = store.update(sid, status="queued")  # retry clears the old failure
    assert (rec.status, rec.error) == (Status.QUEUED, None)
    with pytest.raises(InvalidTransition):
        store.update(sid, status="ready")  # only publish makes a style ready


def test_restart_starts_a_run_only_when_none_is_on(store: ModelStore) -> None:
    sid = _training(store)
    with pytest.raises(InvalidTransition):  # a run is on
        store.restart(sid, {"iterations": 5})
    store.publish(sid, make_weights(1))
    store.set_preview(sid, PNG)
    rec = store.restart(sid, {"iterations": 5})
    assert (rec.status, rec.params, rec.current_version) == (Status.QUEUED, {"iterations": 5}, 1)
    assert store.get(sid) == rec
    assert store.open_weights(sid) == make_weights(1)  # version 1 serves meanwhile
    with pytest.raises(InvalidTransition):  # only one restart wins
        store.restart(sid, {"iterations": 6})
    store.update(sid, status="failed", error="CUDA out of memory")
    rec = store.restart(sid, {"iterations": 7})
    assert (rec.status, rec.error, rec.progress) == (Status.QUEUED, None, None)
    store.cancel(sid)
    assert store.get(sid).servable  # a canceled retrain leaves version 1 serving
    rec = store.restart(sid, {"iterations": 8})  # the service checks the old job is stopped
    assert (rec.status, rec.current_version) == (Status.QUEUED, 1)
    with pytest.raises(ValueError):
        store.restart(store.create(PNG, name="x").id, {"lr": float("nan")})


def test_invalid_weights_are_refused(store: ModelStore) -> None:
    sid = _training(store)
    for bad in (b"", b"not safetensors", pickle.dumps({"w": [1.0]}), make_weights(1)[:-3]):
        with pytest.raises(InvalidWeights):
            store.publish(sid, bad)
    assert store.get(sid).versions == ()


# --- listing -----------------------------------------------------------------------------


def test_list_newest_first_with_pagination_and_filter(store: ModelStore) -> None:
    ids = [store.create(PNG, name=f"s{i}").id for i in range(7)]
    store.update(ids[1], status="training")
    store.update(ids[4], status="training")
    expected = list(reversed(ids))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_styles(limit=3, cursor=cursor)
        seen.extend(r.id for r in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3

    training = store.list_styles(status=Status.TRAINING)
    assert [r.id for r in training.items] == [ids[4], ids[1]]
    assert training.next_cursor is None
    queued = store.list_styles(status=["queued"], limit=100)
    assert len(queued.items) == 5
    assert store.list_styles(status="ready").items == ()
    with pytest.raises(InvalidCursor):
        store.list_styles(cursor="garbage!")


# --- concurrency and crashes -------------------------------------------------------------


def test_concurrent_publishers_in_processes(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = _training(store)
    workers, each = 4, 4
    barrier = SPAWN.Barrier(workers)
    procs = [
        SPAWN.Process(
            target=store_workers.publish_many,
            args=(store_url, str(scratch_root), sid, w, each, barrier),
        )
        for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0] * workers

    rec = store.get(sid)
    assert [v.version for v in rec.versions] == list(range(1, workers * each + 1))
    assert rec.current_version == workers * each
    published = {(w, i) for w in range(workers) for i in range(each)}
    assert {(v.metadata["worker"], v.metadata["i"]) for v in rec.versions} == published
    for v in rec.versions:
        weights = store.open_weights(sid, v.version)
        assert weights == make_weights(v.metadata["worker"] * 1000 + v.metadata["i"])
    assert store.gc(min_age_s=0) == []  # nothing orphaned


def test_crash_between_weights_and_manifest(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = _training(store)
    w1 = make_weights(1)
    store.publish(sid, w1)
    before = store.get(sid)

    code = _run(store_workers.crash_during_publish, store_url, str(scratch_root), sid, 2)
    assert code == store_workers.CRASHED

    # The previous version still serves, untouched.
    assert store.get(sid) == before
    assert store.open_weights(sid) == w1
    # The orphan is young, so a default gc leaves it (a publish may be in flight) ...
    assert store.gc() == []
    # ... and once old enough it is collected, and only it.
    removed = store.gc(min_age_s=0)
    assert len(removed) == 1
    assert removed[0].startswith(f"{sid}/{before.incarnation}/weights/")
    assert store.open_weights(sid) == w1
    assert store.publish(sid, make_weights(3)).version == 2


# --- corruption and bad input ------------------------------------------------------------


def test_flipped_byte_in_weights_is_detected(store: ModelStore) -> None:
    sid = _training(store)
    healthy = _training(store)
    w = make_weights(1)
    info = store.publish(sid, w)
    store.publish(healthy, make_weights(2))

    rec = store.get(sid)
    key = f"{rec.incarnation}/{info.name}"
    data = bytearray(store.backend.get_blob(sid, key) or b"")
    data[len(data) // 2] ^= 0x01
    store.backend.put_blob(sid, key, bytes(data))

    with pytest.raises(ChecksumMismatch) as exc:
        store.open_weights(sid)
    err = exc.value
    assert (err.style_id, err.version, err.expected) == (sid, 1, info.sha256)
    assert err.actual != info.sha256
    assert sid in str(err)
    # The rest of the store is unaffected.
    assert store.open_weights(healthy) == make_weights(2)
    assert len(store.list_styles().items) == 2


def test_corrupt_manifest_is_isolated(store: ModelStore) -> None:
    bad = store.create(PNG, name="bad").id
    good = store.create(PNG, name="good").id
    _data, token = store.backend.read_manifest(bad) or (b"", "")
    store.backend.write_manifest(bad, b'{"schema": 1, "id": "../../etc"', token)

    with pytest.raises(CorruptRecord) as exc:
        store.get(bad)
    assert exc.value.style_id == bad
    assert [r.id for r in store.list_styles().items] == [good]
    assert store.get(good).name == "good"
    assert store.gc(min_age_s=0) == []  # never deletes what it cannot prove unreferenced
    store.delete(bad)  # a corrupt style can still be removed
    with pytest.raises(StyleNotFound):
        store.get(bad)


@pytest.mark.parametrize(
    "bad_id",
    ["../x", "..", "/etc/passwd", "a/b", "a\\b", "", "Mosaic", "a.b", "a\x00", "é", "-a", "a" * 65],
)
def test_path_traversal_ids_are_rejected(
    store: ModelStore, store_url: str, tmp_path: Path, bad_id: str
) -> None:
    sid = _training(store)
    w = make_weights(1)
    calls = [
        lambda: store.get(bad_id),
        lambda: store.create(PNG, name="x", style_id=bad_id),
        lambda: store.update(bad_id, status="training"),
        lambda: store.publish(bad_id, w),
        lambda: store.open_weights(bad_id),
        lambda: store.style_image(bad_id),
        lambda: store.set_preview(bad_id, PNG),
        lambda: store.delete(bad_id),
        lambda: store.scratch_dir(bad_id),
    ]
    for call in calls:
        with pytest.raises(InvalidStyleId):
            call()
    # Nothing was written anywhere but the one valid style.
    assert [r.id for r in store.list_styles().items] == [sid]
    if store_url.startswith("file:"):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_unknown_id_is_typed(store: ModelStore) -> None:
    for call in (
        lambda: store.get("nope"),
        lambda: store.update("nope", progress=Progress(1, 2)),
        lambda: store.publish("nope", make_weights(1)),
        lambda: store.open_weights("nope"),
        lambda: store.delete("nope"),
    ):
        with pytest.raises(StyleNotFound) as exc:
            call()
        assert exc.value.style_id == "nope"


# --- deletion ----------------------------------------------------------------------------


def test_delete_during_training_stops_the_worker(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = _training(store)
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
    sid = _training(store)
    assert store.cancel(sid).status is Status.CANCELED
    with pytest.raises(InvalidTransition) as exc:
        store.publish(sid, make_weights(1))
    assert exc.value.canceled
    with pytest.raises(InvalidTransition):
        store.update(sid, progress=Progress(2, 100))
    assert store.get(sid).versions == ()


def test_crash_mid_delete_leaves_style_canceled(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = _training(store)
    code = _run(store_workers.crash_during_delete, store_url, str(scratch_root), sid)
    assert code == store_workers.CRASHED
    assert store.get(sid).status is Status.CANCELED  # what a polling worker sees
    store.delete(sid)
    with pytest.raises(StyleNotFound):
        store.get(sid)


def test_recreate_after_delete_starts_clean(store: ModelStore) -> None:
    sid = _training(store, style_id="mosaic")
    store.publish(sid, make_weights(1))
    store.delete(sid)
    again = store.create(PNG, name="Mosaic again", style_id="mosaic")
    assert again.versions == ()
    with pytest.raises(VersionNotFound):
        store.open_weights("mosaic")
    assert store.style_image("mosaic") == PNG


# --- housekeeping --------------------------------------------------------------------------


def test_publish_clears_progress(store: ModelStore) -> None:
    sid = _training(store)
    store.update(sid, progress=Progress(90, 100, eta_s=4.0))
    store.publish(sid, make_weights(1))
    rec = store.get(sid)
    assert (rec.status, rec.progress) == (Status.READY, None)


def test_gc_removes_scratch_of_runs_no_longer_running(store: ModelStore) -> None:
    running = _training(store)
    failed = _training(store)
    canceled = _training(store)
    deleted = _training(store)
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


# --- bundled styles (demo styles): install, finish, remember deletions --------------------


def _half_installed(store: ModelStore, style_id: str) -> None:
    """What an earlier release's install left when it died: the record, no version."""
    store.create(
        store_workers.BUNDLED_IMAGE,
        name="Demo",
        params=store_workers.BUNDLED_PARAMS,
        style_id=style_id,
    )


@pytest.mark.parametrize("half_installed", [False, True])
def test_concurrent_installs_make_one_version(
    store: ModelStore, store_url: str, scratch_root: Path, half_installed: bool
) -> None:
    if half_installed:
        _half_installed(store, "demo")
    workers = 4
    barrier, results = SPAWN.Barrier(workers), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=store_workers.install_together,
            args=(store_url, str(scratch_root), "demo", barrier, results),
        )
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=90) for _ in procs)
    for p in procs:
        p.join(90)
    assert [p.exitcode for p in procs] == [0] * workers

    won = "finished" if half_installed else "installed"
    assert outcomes == sorted([won] + ["present"] * (workers - 1))
    rec = store.get("demo")
    assert rec.status is Status.READY and rec.bundled
    assert [v.version for v in rec.versions] == [1] and rec.current_version == 1
    assert store.open_weights("demo") == make_weights(7)
    assert store.preview("demo") == store_workers.BUNDLED_PREVIEW
    assert str(store_workers.install_demo(store, "demo")) == "present"


def test_an_install_that_dies_leaves_nothing_and_is_done_again(
    store: ModelStore, store_url: str, scratch_root: Path
) -> None:
    code = _run(store_workers.crash_during_install, store_url, str(scratch_root), "demo")
    assert code == store_workers.CRASHED
    with pytest.raises(StyleNotFound):  # its files were written, its manifest never was
        store.get("demo")
    assert str(store_workers.install_demo(store, "demo")) == "installed"
    assert [v.version for v in store.get("demo").versions] == [1]
    assert len(store.gc(min_age_s=0)) == 3  # the dead install's files, and only those
    assert store.open_weights("demo") == make_weights(7)


def test_a_half_installed_style_is_finished_whatever_it_reached(store: ModelStore) -> None:
    _half_installed(store, "demo")
    store.update("demo", status=Status.TRAINING, progress=Progress(5, 3000))
    assert str(store_workers.install_demo(store, "demo")) == "finished"
    rec = store.get("demo")
    assert rec.status is Status.READY and rec.progress is None and rec.bundled
    assert [v.version for v in rec.versions] == [1]
    with pytest.raises(InvalidTransition):  # a run still going on there must stop
        store.update("demo", progress=Progress(6, 3000))


def test_an_id_holding_another_style_is_left_alone(store: ModelStore) -> None:
    store.create(store_workers.BUNDLED_IMAGE, name="mine", style_id="demo", owner="key-1")
    store.create(PNG, name="other image", style_id="demo2")
    assert str(store_workers.install_demo(store, "demo")) == "taken"
    assert str(store_workers.install_demo(store, "demo2")) == "taken"
    assert not store.get("demo").versions and not store.get("demo2").versions


def test_a_deleted_bundled_style_stays_deleted(store: ModelStore) -> None:
    from model_store import forget_deletion, is_deleted

    assert str(store_workers.install_demo(store, "demo")) == "installed"
    store.delete("demo")
    assert is_deleted(store, "demo")
    assert str(store_workers.install_demo(store, "demo")) == "deleted"
    with pytest.raises(StyleNotFound):
        store.get("demo")
    assert "demo" not in [r.id for r in store.list_styles().items]
    store.gc(min_age_s=0)  # the tombstone is no garbage
    assert is_deleted(store, "demo")
    # A user's own style of any other id leaves no tombstone.
    mine = store.create(PNG, name="mine").id
    store.delete(mine)
    assert not is_deleted(store, mine)
    # Forgotten, the next start installs it again.
    assert forget_deletion(store, "demo") and not forget_deletion(store, "demo")
    assert str(store_workers.install_demo(store, "demo")) == "installed"
    assert [v.version for v in store.get("demo").versions] == [1]


def test_a_style_installed_by_an_earlier_release_is_marked_so_its_deletion_is_kept(
    store: ModelStore,
) -> None:
    from model_store import is_deleted

    _half_installed(store, "demo")  # the earlier release: create, then publish
    store.publish("demo", make_weights(7), metadata={"demo": True})
    assert not store.get("demo").bundled
    assert str(store_workers.install_demo(store, "demo")) == "present"
    assert store.get("demo").bundled and len(store.get("demo").versions) == 1
    store.delete("demo")
    assert is_deleted(store, "demo")
