"""The model store contract: a style's record and its versions round trip: create and get,
ids, progress, publish, previews, kept versions, transitions, restart, refused weights.
Every test runs on each backend (``store_url``, ``file://`` and ``s3://`` through a moto
server process; see conftest.py)."""

from __future__ import annotations

import pickle

import pytest
from store_testing import JPEG, PNG, training_style
from store_workers import make_weights

from model_store import (
    InvalidTransition,
    InvalidWeights,
    ModelStore,
    PreviewNotFound,
    Progress,
    Status,
    StyleExists,
    VersionNotFound,
)
from model_store.content import sha256_hex


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
    sid = training_style(store)
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
    sid = training_style(store)
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
    sid = training_style(store)
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
    sid = training_style(store)
    rec = store.update(sid, status="failed", error="CUDA out of memory")
    assert (rec.status, rec.error) == (Status.FAILED, "CUDA out of memory")
    with pytest.raises(InvalidTransition):
        store.update(sid, progress=Progress(1, 100))
    rec = store.update(sid, status="queued")  # retry clears the old failure
    assert (rec.status, rec.error) == (Status.QUEUED, None)
    with pytest.raises(InvalidTransition):
        store.update(sid, status="ready")  # only publish makes a style ready


def test_restart_starts_a_run_only_when_none_is_on(store: ModelStore) -> None:
    sid = training_style(store)
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
    sid = training_style(store)
    for bad in (b"", b"not safetensors", pickle.dumps({"w": [1.0]}), make_weights(1)[:-3]):
        with pytest.raises(InvalidWeights):
            store.publish(sid, bad)
    assert store.get(sid).versions == ()


def test_publish_clears_progress(store: ModelStore) -> None:
    sid = training_style(store)
    store.update(sid, progress=Progress(90, 100, eta_s=4.0))
    store.publish(sid, make_weights(1))
    rec = store.get(sid)
    assert (rec.status, rec.progress) == (Status.READY, None)
