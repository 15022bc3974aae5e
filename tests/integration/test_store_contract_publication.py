"""The model store contract: publication under races and crashes: concurrent publishers in
processes, a crash between the weights and the manifest. Every test runs on each backend
(``store_url``, ``file://`` and ``s3://`` through a moto server process; see conftest.py);
concurrency and crash tests use real processes (``spawn``), never threads."""

from __future__ import annotations

from pathlib import Path

import store_workers
from store_testing import SPAWN, run_in_process, training_style
from store_workers import make_weights

from model_store import (
    open_store,
)


def test_concurrent_publishers_in_processes(store_url: str, scratch_root: Path) -> None:
    store = open_store(store_url, scratch_root=scratch_root)
    sid = training_style(store)
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
    sid = training_style(store)
    w1 = make_weights(1)
    store.publish(sid, w1)
    before = store.get(sid)

    code = run_in_process(store_workers.crash_during_publish, store_url, str(scratch_root), sid, 2)
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
