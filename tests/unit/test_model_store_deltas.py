"""Versions stored as what differs from another style's weights (model_store.deltas):
byte-exact rebuilds, the bytes saved, damage reported, and deletes that would strand a
child refused (issue 27 item 3). A real file store on a temp dir, real generator files."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch
from blend_testing import family_member
from PIL import Image

import model_store.deltas
from model_store import (
    ChecksumMismatch,
    CorruptRecord,
    HasDependents,
    ModelStore,
    StyleNotFound,
    open_store,
)
from model_store.delta_format import DeltaError, apply_delta, make_delta
from model_store.lineage import ParentRef
from model_store.records import record_from_json, record_to_json
from stylenet import generator_to_bytes
from stylenet.generators import build_generator


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 90, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _init(style_id: str, data: bytes, version: int = 1) -> dict:
    start = {"kind": "style", "style_id": style_id, "version": version, "sha256": _sha(data)}
    return {"init": start}


@pytest.fixture(scope="module")
def parent_bytes() -> bytes:
    torch.manual_seed(3)
    model = build_generator(width=0.25)
    return generator_to_bytes(model, metrics={"init": {"kind": "scratch"}}, dtype="float16")


@pytest.fixture
def store(tmp_path: Path, parent_bytes: bytes) -> ModelStore:
    store = open_store((tmp_path / "models").as_uri())
    store.create(_png(), name="Parent", style_id="p")
    store.publish("p", parent_bytes, metrics={"init": {"kind": "scratch"}})
    return store


def _publish_child(store: ModelStore, sid: str, parent: str, parent_data: bytes, seed: int):
    """Publish a γ/β-only adaptation of ``parent`` v1 as ``sid``; return its full bytes."""
    data = family_member(parent_data, seed, _init(parent, parent_data)["init"])
    store.create(_png(), name=sid, style_id=sid)
    store.publish(sid, data, metrics=_init(parent, parent_data))
    return data


def test_a_gamma_beta_child_stores_kilobytes_and_reads_back_byte_for_byte(store, parent_bytes):
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    info = store.get("c").version_info()
    assert info.delta is not None and info.delta.parent == ParentRef("p", 1, _sha(parent_bytes))
    assert (info.sha256, info.size) == (_sha(child), len(child))  # the full file's identity
    assert info.stored_size == info.delta.size < len(child) / 20
    assert store.open_weights("c") == child
    # The parent is a full file, and knows who depends on it.
    assert store.get("p").version_info().delta is None
    assert store.dependents("p") == ["c"]


def test_weights_that_share_nothing_with_their_start_are_stored_in_full(store, parent_bytes):
    torch.manual_seed(11)
    other = generator_to_bytes(build_generator(width=0.25), dtype="float16")
    store.create(_png(), name="Far", style_id="far")
    store.publish("far", other, metrics=_init("p", parent_bytes))
    info = store.get("far").version_info()
    assert info.delta is None and info.name.endswith(".safetensors")
    assert store.open_weights("far") == other
    assert store.dependents("p") == []


def test_a_manifest_written_before_deltas_reads_as_before(store, parent_bytes):
    doc = record_to_json(store.get("p")).decode()
    assert '"delta": null' in doc and '"dependents": []' in doc
    old = doc.replace(',\n   "delta": null', "").replace(',\n "dependents": []', "")
    assert '"delta"' not in old and '"dependents"' not in old
    rec = record_from_json("p", old.encode())
    assert rec == store.get("p")


def test_a_damaged_delta_is_a_clear_error_never_a_wrong_file(store, parent_bytes):
    _publish_child(store, "c", "p", parent_bytes, seed=1)
    rec = store.get("c")
    key = f"{rec.incarnation}/{rec.version_info().name}"
    stored = store.backend.get_blob("c", key)
    flipped = bytearray(stored)
    flipped[-3] ^= 0xFF  # a byte of a stored γ/β
    store.backend.put_blob("c", key, bytes(flipped))
    with pytest.raises(ChecksumMismatch) as caught:
        store.open_weights("c")
    assert (caught.value.style_id, caught.value.version) == ("c", 1)


def test_a_delta_over_other_bytes_is_refused_by_the_format(parent_bytes):
    child = family_member(parent_bytes, 5, {"kind": "style"})
    delta = make_delta(child, parent_bytes)
    assert apply_delta(delta, parent_bytes) == child
    torch.manual_seed(4)
    stranger = generator_to_bytes(build_generator(width=0.25), dtype="float16")
    with pytest.raises(DeltaError, match="parent"):
        apply_delta(delta, stranger)
    with pytest.raises(DeltaError):
        apply_delta(delta[:-1], parent_bytes)


def test_a_damaged_parent_is_named_in_the_childs_error(store, parent_bytes):
    _publish_child(store, "c", "p", parent_bytes, seed=1)
    rec = store.get("p")
    store.backend.put_blob("p", f"{rec.incarnation}/{rec.version_info().name}", b"x" * 64)
    with pytest.raises(CorruptRecord, match="stored over p v1, which is damaged"):
        store.open_weights("c")


def test_a_chain_is_stored_over_its_full_file_ancestor(store, parent_bytes):
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    grandchild = _publish_child(store, "g", "c", child, seed=2)
    info = store.get("g").version_info()
    assert info.delta.parent == ParentRef("p", 1, _sha(parent_bytes))  # flattened
    assert info.metrics["init"]["style_id"] == "c"  # its start is still recorded as is
    assert store.open_weights("g") == grandchild
    assert store.dependents("p") == ["c", "g"]
    store.delete("c")  # the middle of the chain: nothing is stored over it
    assert store.open_weights("g") == grandchild


def test_deleting_a_parent_with_dependents_is_refused_and_changes_nothing(store, parent_bytes):
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    before = store.get("p")
    files = sorted(store.backend.list_blobs("p"))
    with pytest.raises(HasDependents) as caught:
        store.delete("p")
    assert caught.value.dependents == ["c"]
    assert "delete them first, or retrain them" in str(caught.value)
    assert store.get("p") == before and sorted(store.backend.list_blobs("p")) == files
    assert store.open_weights("c") == child
    store.delete("c")
    assert store.get("p").dependents == ()  # the child's delete dropped its mark
    store.delete("p")
    with pytest.raises(StyleNotFound):
        store.get("p")


def test_a_parent_keeps_the_version_its_dependents_need(store, parent_bytes):
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    for seed in (21, 22, 23):
        retrained = family_member(parent_bytes, seed, {"kind": "continue"})
        store.publish("p", retrained, keep_versions=1)
    assert [v.version for v in store.get("p").versions] == [1, 4]
    assert store.open_weights("c") == child


def test_a_child_retrained_in_full_lets_its_parent_go(store, parent_bytes, monkeypatch):
    _publish_child(store, "c", "p", parent_bytes, seed=1)
    torch.manual_seed(12)
    fresh = generator_to_bytes(build_generator(width=0.25), dtype="float16")
    monkeypatch.setattr(model_store.deltas, "MARK_GRACE_S", 0.0)  # the mark is old now
    store.publish("c", fresh, metrics={"init": {"kind": "scratch"}}, keep_versions=1)
    assert store.get("p").dependents == ()
    store.delete("p")
    assert store.open_weights("c") == fresh


def test_a_publish_in_flight_blocks_the_delete_of_its_parent(store, parent_bytes):
    outcome: list[BaseException] = []

    def delete_parent(stage: str) -> None:
        if stage == "weights-written":  # the mark is on the parent, the manifest not yet
            try:
                store.delete("p")
            except HasDependents as exc:
                outcome.append(exc)

    store._fault_hook = delete_parent
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    store._fault_hook = None
    assert [e.dependents for e in outcome] == [["c"]]
    assert store.open_weights("c") == child


def test_a_parent_deleted_before_the_mark_leaves_the_child_stored_in_full(store, parent_bytes):
    def delete_parent(stage: str) -> None:
        if stage == "delta-written":  # after the diff, before the mark
            store.delete("p")

    store._fault_hook = delete_parent
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    store._fault_hook = None
    assert store.get("c").version_info().delta is None
    assert store.open_weights("c") == child


def test_a_crashed_publish_blocks_for_the_grace_then_its_mark_is_stale(
    store, parent_bytes, monkeypatch
):
    def crash(stage: str) -> None:
        if stage == "weights-written":
            raise RuntimeError("worker killed")

    store._fault_hook = crash
    with pytest.raises(RuntimeError):
        _publish_child(store, "c", "p", parent_bytes, seed=1)
    store._fault_hook = None
    with pytest.raises(HasDependents):
        store.delete("p")  # as far as anyone can tell, a publish in flight
    monkeypatch.setattr(model_store.deltas, "MARK_GRACE_S", 0.0)
    store.delete("p")


def test_a_publisher_too_slow_after_its_mark_stores_the_full_file(store, parent_bytes, monkeypatch):
    monkeypatch.setattr(model_store.deltas, "MARK_GRACE_S", 0.0)  # any delay is too long
    child = _publish_child(store, "c", "p", parent_bytes, seed=1)
    info = store.get("c").version_info()
    assert info.delta is None and store.open_weights("c") == child
