"""A half-registered demo style is finished from its bundled weights, never trained.

An earlier release registered a demo style in two steps (create, then publish); a start
that died between them (a full disk) left it ``queued`` without a version, and the
reconciler trained it for hours (issue #24 item 4). Now the reconciler leaves such a
record to the API's install, and a training job that finds the install done, or sees it
happen, stops without training.
"""

from __future__ import annotations

from typing import Any

from worker_harness import TINY, WorkerEnv, wait_for

from model_store import read_bundle
from service.demo_styles import DEFAULT_DIR, register_demo_styles
from worker.reconcile import Reconciler
from worker.settings import WorkerSettings

DEMOS = {style.id: style for style in read_bundle(DEFAULT_DIR)}


def _half_registered(env: WorkerEnv, style_id: str) -> None:
    demo = DEMOS[style_id]
    env.store.create(
        demo.read("style_image"), name=demo.name, params=demo.params, style_id=style_id
    )


def _reconciler(env: WorkerEnv, **settings: Any) -> Reconciler:
    values = {**env.settings_kwargs(), "reconcile_grace_s": 0, **settings}
    return Reconciler(env.store, env.redis, WorkerSettings(**values), owner="test")


def test_the_reconciler_leaves_a_half_registered_demo_style_to_the_install(
    worker_env: WorkerEnv,
) -> None:
    _half_registered(worker_env, "starry-night")
    assert _reconciler(worker_env, demo_styles_dir=DEFAULT_DIR).run() == []
    assert not worker_env.redis.exists("rq:job:train-starry-night")

    assert register_demo_styles(worker_env.store) == ["scream", "starry-night"]
    assert worker_env.record("starry-night").status == "ready"
    assert _reconciler(worker_env, demo_styles_dir=DEFAULT_DIR).run() == []

    # Without the bundle to compare with, such a record is an ordinary style to train.
    worker_env.store.delete("scream")
    _half_registered(worker_env, "scream")
    repairs = _reconciler(worker_env).run()
    assert [(r.style_id, r.action) for r in repairs] == [("scream", "enqueued")]


def test_a_training_job_stops_when_the_install_finishes_its_style(
    worker_env: WorkerEnv,
) -> None:
    # Enqueued by an earlier release's reconciler before this start's install finished it.
    _half_registered(worker_env, "starry-night")
    long = {**TINY, "iterations": 400}
    running = worker_env.enqueue("starry-night", long)
    worker = worker_env.start_worker()
    worker_env.wait_horse("starry-night", min_iteration=2)
    assert register_demo_styles(worker_env.store) == ["scream", "starry-night"]
    wait_for(lambda: running.get_status(refresh=True) == "finished", 60, "the job to stop")
    assert running.return_value()["status"] == "canceled"
    assert "became ready without this run" in worker.log()

    # And a job that starts after the install does not train at all.
    stale = worker_env.enqueue("scream", long)
    wait_for(lambda: stale.get_status(refresh=True) == "finished", 60, "the stale job")
    assert stale.return_value() == {"status": "ready", "style_id": "scream", "trained": False}
    for style_id in ("scream", "starry-night"):
        rec = worker_env.record(style_id)
        assert rec.status == "ready" and [v.version for v in rec.versions] == [1], rec
        assert rec.version_info().metadata["demo"] is True
