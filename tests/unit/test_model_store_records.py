from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from model_store import CorruptRecord, InvalidTransition, Progress, Status, StyleRecord, VersionInfo
from model_store.ids import new_incarnation
from model_store.records import (
    LOSS_HISTORY_POINTS,
    SCHEMA_VERSION,
    TRANSITIONS,
    BlobInfo,
    apply_update,
    bump,
    record_from_json,
    record_to_json,
)

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
SHA = "ab" * 32


def make_record(**changes: object) -> StyleRecord:
    rec = StyleRecord(
        id="mosaic",
        name="Mosaic",
        status=Status.QUEUED,
        created_at=T0,
        updated_at=T0,
        incarnation=new_incarnation(),
        style_image=BlobInfo("style-0123456789abcdef.png", SHA, 10, "image/png"),
        params={"iterations": 40_000, "style_weight": 1e10},
    )
    return replace(rec, **changes)  # type: ignore[arg-type]


def test_json_round_trip_of_a_full_record() -> None:
    v1 = VersionInfo(
        1, SHA, 123, T0, {"arch": "residual"}, {"val_loss": 2.5}, f"weights/{SHA}.safetensors"
    )
    rec = make_record(
        status=Status.READY,
        progress=Progress(100, 100, 0.0),
        metrics={"val_loss": 2.5, "device": "cuda"},
        current_version=1,
        versions=(v1,),
        preview=BlobInfo("preview-0123456789abcdef.jpg", SHA, 5, "image/jpeg"),
        revision=7,
    )
    data = record_to_json(rec)
    assert json.loads(data)["schema"] == SCHEMA_VERSION
    assert record_from_json("mosaic", data) == rec
    assert rec.version_info() == v1
    assert rec.version_info(2) is None
    assert rec.servable
    assert rec.blob_names() == {rec.style_image.name, v1.name, "preview-0123456789abcdef.jpg"}


def test_nan_is_refused_at_write() -> None:
    with pytest.raises(ValueError, match="JSON"):
        record_to_json(make_record(metrics={"loss": float("nan")}))


def _mangle(key: str, value: object) -> bytes:
    doc = json.loads(record_to_json(make_record()))
    doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"[]",
        b"null",
        _mangle("schema", 99),
        _mangle("status", "exploded"),
        _mangle("id", "other"),
        _mangle("id", "../../etc"),
        _mangle("incarnation", "../x"),
        _mangle("created_at", "yesterday"),
        _mangle("created_at", "2025-01-01T00:00:00"),  # naive
        _mangle("current_version", 3),  # points at no version
        _mangle(
            "style_image",
            {"name": "../../etc/passwd", "sha256": SHA, "size": 1, "content_type": "x"},
        ),
        _mangle("versions", [{"version": 1}]),
        _mangle("params", [1, 2]),
    ],
)
def test_corrupt_manifests_raise_a_typed_error(data: bytes) -> None:
    with pytest.raises(CorruptRecord) as exc:
        record_from_json("mosaic", data)
    assert exc.value.style_id == "mosaic"


def test_tampered_weights_path_is_corrupt() -> None:
    doc = json.loads(record_to_json(make_record()))
    doc["versions"] = [
        {
            "version": 1,
            "name": "../../../../etc/shadow",
            "sha256": SHA,
            "size": 1,
            "created_at": T0.isoformat(),
            "metadata": {},
            "metrics": {},
        }
    ]
    with pytest.raises(CorruptRecord):
        record_from_json("mosaic", json.dumps(doc).encode())


def test_lifecycle_table() -> None:
    assert TRANSITIONS[Status.CANCELED] == {Status.CANCELED}
    assert Status.READY not in TRANSITIONS[Status.TRAINING]  # only publish makes ready
    assert Status.TRAINING in TRANSITIONS[Status.READY]  # retrain


def test_apply_update_moves_and_clears() -> None:
    rec = make_record()
    training = apply_update(rec, status=Status.TRAINING, progress=Progress(5, 10, 3.0))
    assert (training.status, training.progress) == (Status.TRAINING, Progress(5, 10, 3.0))
    failed = apply_update(training, status=Status.FAILED, error="boom")
    # Where the run stopped stays visible; an ETA of a run that is over does not.
    assert (failed.status, failed.error, failed.progress) == (
        Status.FAILED,
        "boom",
        Progress(5, 10, None),
    )
    retried = apply_update(failed, status=Status.QUEUED)
    assert (retried.error, retried.progress) == (None, None)
    assert apply_update(rec) == rec


def test_progress_never_goes_backwards_within_a_run() -> None:
    # Attempt 1 reported 250/300, was killed; attempt 2 resumes from its checkpoint at 200.
    rec = apply_update(make_record(), status=Status.TRAINING, progress=Progress(250, 300, 9.0))
    requeued = apply_update(rec, status=Status.QUEUED)
    resumed = apply_update(requeued, status=Status.TRAINING, progress=Progress(210, 300, 20.0))
    assert resumed.progress == Progress(250, 300, 9.0)
    caught_up = apply_update(resumed, progress=Progress(260, 300, 8.0))
    assert caught_up.progress == Progress(260, 300, 8.0)
    # A new run (from a final status) starts from nothing again.
    failed = apply_update(caught_up, status=Status.FAILED, error="x")
    again = apply_update(failed, status=Status.TRAINING, progress=Progress(3, 300, 1.0))
    assert again.progress == Progress(3, 300, 1.0)


@pytest.mark.parametrize(
    ("start", "kwargs"),
    [
        (Status.QUEUED, {"status": Status.READY}),
        (Status.CANCELED, {"status": Status.TRAINING}),
        (Status.CANCELED, {"progress": Progress(1, 2)}),
        (Status.READY, {"progress": Progress(1, 2)}),
        (Status.FAILED, {"status": Status.CANCELED}),
    ],
)
def test_apply_update_refuses(start: Status, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidTransition) as exc:
        apply_update(make_record(status=start), **kwargs)  # type: ignore[arg-type]
    assert exc.value.canceled is (start is Status.CANCELED)


def test_bump_increments_revision_and_never_goes_back_in_time() -> None:
    cur = make_record(updated_at=datetime.now(UTC) + timedelta(hours=1), revision=4)
    new = bump(cur, cur)
    assert new.revision == 5
    assert new.updated_at >= cur.updated_at


def test_progress_fraction() -> None:
    assert Progress(5, 10).fraction == 0.5
    assert Progress(5, 0).fraction == 0.0
    assert Progress(20, 10).fraction == 1.0


def test_loss_history_is_kept_thinned_and_starts_anew_with_a_run() -> None:
    rec = make_record(status=Status.TRAINING)
    for i in range(1, 1001):
        rec = apply_update(rec, progress=Progress(i, 1000, loss=1000.0 / i))
    rec = apply_update(rec, progress=Progress(1000, 1000, loss=1.0))  # same iteration: once
    history = rec.loss_history
    assert LOSS_HISTORY_POINTS // 2 <= len(history) <= LOSS_HISTORY_POINTS
    assert history[0] == (1, 1000.0) and history[-1] == (1000, 1.0)
    assert [i for i, _ in history] == sorted({i for i, _ in history})
    # What a reload reads back, also from a manifest written before the field existed.
    assert record_from_json(rec.id, record_to_json(rec)).loss_history == history
    old = json.loads(record_to_json(rec))
    del old["loss_history"], old["run_preview"]
    assert record_from_json(rec.id, json.dumps(old).encode()).loss_history == ()
    rec = apply_update(rec, status=Status.FAILED)
    assert rec.loss_history == history  # the failed run's curve stays to look at
    assert apply_update(rec, status=Status.QUEUED).loss_history == ()  # a new run
