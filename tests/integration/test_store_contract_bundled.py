"""The model store contract: bundled styles (demo styles): concurrent installs, an install
that dies or was left half done, an id held by another style, deletions remembered. Every
test runs on each backend (``store_url``, ``file://`` and ``s3://`` through a moto server
process; see conftest.py); concurrency and crash tests use real processes (``spawn``), never
threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import store_workers
from store_testing import PNG, SPAWN, run_in_process
from store_workers import make_weights

from model_store import (
    InvalidTransition,
    ModelStore,
    Progress,
    Status,
    StyleNotFound,
)


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
    code = run_in_process(store_workers.crash_during_install, store_url, str(scratch_root), "demo")
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
