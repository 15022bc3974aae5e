"""A version's exports in the model store (model_store.exports): stored beside the
weights, one per version and kind, verified on read, kept by gc while the version is."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from model_store import CorruptRecord, ModelStore, VersionNotFound, open_store
from model_store.records import record_from_json, record_to_json
from stylenet import generator_to_bytes
from stylenet.generators import build_generator


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = open_store((tmp_path / "models").as_uri())
    store.create(_png(), name="Red", style_id="red")
    store.publish("red", generator_to_bytes(build_generator(width=0.125)))
    return store


def test_an_export_is_stored_once_per_version_and_verified(store: ModelStore) -> None:
    assert store.open_export("red", 1, "onnx") is None
    blob = store.put_export("red", 1, "onnx", b"first export")
    assert blob.name == f"exports/{blob.sha256}.onnx"
    data, found = store.open_export("red", 1, "onnx")
    assert (data, found) == (b"first export", blob)
    # A second writer (another process converting at the same time) keeps the first.
    assert store.put_export("red", 1, "onnx", b"second export") == blob
    assert store.open_export("red", 1, "onnx")[0] == b"first export"
    assert store.open_export("red", 1, "onnx-float16") is None  # another kind
    rec = store.get("red")
    assert record_from_json("red", record_to_json(rec)) == rec
    assert rec.version_info(1).exports == {"onnx": blob}


def test_exports_follow_their_version(store: ModelStore, tmp_path: Path) -> None:
    blob = store.put_export("red", 1, "onnx", b"v1 export")
    with pytest.raises(VersionNotFound):
        store.put_export("red", 2, "onnx", b"no such version")
    with pytest.raises(ValueError, match="kind"):
        store.put_export("red", 1, "coreml", b"not a kind")
    # gc keeps a referenced export; the loser of a race (unreferenced) goes.
    store.put_export("red", 1, "onnx", b"lost the race")
    removed = store.gc(min_age_s=0)
    assert removed and all("exports/" in name for name in removed)
    assert store.open_export("red", 1, "onnx")[0] == b"v1 export"
    # A new version keeping only itself drops v1 and so its export.
    store.publish("red", generator_to_bytes(build_generator(width=0.25)), keep_versions=1)
    removed = store.gc(min_age_s=0)
    assert any(blob.name in name for name in removed)
    assert store.open_export("red", 2, "onnx") is None


def test_a_damaged_export_is_refused(store: ModelStore, tmp_path: Path) -> None:
    blob = store.put_export("red", 1, "onnx", b"pristine export")
    (path,) = (tmp_path / "models").rglob(blob.name.split("/")[-1])
    path.write_bytes(b"tampered export")
    with pytest.raises(CorruptRecord):
        store.open_export("red", 1, "onnx")
