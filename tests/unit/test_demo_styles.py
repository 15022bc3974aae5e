"""The bundled demo styles: verified, registered once, and they really stylize."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model_store import StyleNotFound, open_store
from service.demo_styles import DEFAULT_DIR, register_demo_styles
from stylenet import TrainParams, load_generator, stylize


def test_demo_styles_register_once_and_stylize(tmp_path: Path, photo) -> None:
    store = open_store((tmp_path / "models").as_uri())
    assert register_demo_styles(store) == ["scream", "starry-night"]
    assert register_demo_styles(store) == []
    for style_id in ("scream", "starry-night"):
        record = store.get(style_id)
        assert record.servable
        assert store.preview(style_id)
        generator, info = load_generator(store.open_weights(style_id))
        assert info.config.norm == "instance"
        assert info.dtype == "float16"
        out = stylize(photo, generator, max_side=64)
        assert out.size == (64, 64)
        # "Train again" reuses the recorded params: they must still be valid ones, the
        # same as the generator's (fields added since take their defaults on both sides).
        recorded = TrainParams.from_dict(dict(record.params))
        assert recorded == TrainParams.from_dict(info.train_params)


def test_tampered_demo_style_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(DEFAULT_DIR, folder)
    weights = folder / "scream" / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    store = open_store((tmp_path / "models").as_uri())
    assert register_demo_styles(store, folder) == ["starry-night"]
    assert "scream" in caplog.text
    with pytest.raises(StyleNotFound):
        store.get("scream")
