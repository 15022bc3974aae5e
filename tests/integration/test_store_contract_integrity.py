"""The model store contract: corruption and bad input: a flipped byte in the weights, a
corrupt manifest, path traversal ids, unknown ids. Every test runs on each backend
(``store_url``, ``file://`` and ``s3://`` through a moto server process; see
conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from store_testing import PNG, training_style
from store_workers import make_weights

from model_store import (
    ChecksumMismatch,
    CorruptRecord,
    InvalidStyleId,
    ModelStore,
    Progress,
    StyleNotFound,
)


def test_flipped_byte_in_weights_is_detected(store: ModelStore) -> None:
    sid = training_style(store)
    healthy = training_style(store)
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
    sid = training_style(store)
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
