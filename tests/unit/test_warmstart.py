"""Where a training starts (TrainParams.init): scratch, base, a style, or the nearest style."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from model_store import open_store
from stylenet import TrainParams, generator_to_bytes, samples, train
from stylenet.errors import InvalidParams
from stylenet.generators import GeneratorConfig, build_generator
from stylenet.warmstart import Start, base_starts, choose_init, find_base
from worker.starts import resolve_init

QUARTER = GeneratorConfig(width=0.25)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


HALF = GeneratorConfig(width=0.5)


def _weights(config: GeneratorConfig, seed: int) -> bytes:
    torch.manual_seed(seed)
    return generator_to_bytes(build_generator(config))


def _start(kind: str, config: GeneratorConfig, seed: int, **extra) -> Start:
    data = _weights(config, seed)
    return Start(kind, config, lambda: data, sha256_hex(data), **extra)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_init_is_validated() -> None:
    assert TrainParams().init == "auto"
    for good in ("scratch", "base", "starry-night", "abc_12"):
        assert TrainParams.from_dict({"init": good}).init == good
    for bad in ("", "../etc", "Starry", 7, None, "x" * 65):
        with pytest.raises(InvalidParams) as caught:
            TrainParams.from_dict({"init": bad})
        assert caught.value.field == "init"


def test_choices_in_order_of_preference() -> None:
    own = _start("continue", QUARTER, 1, style_id="me", version=3)
    base = _start("base", QUARTER, 2, name="base.safetensors")
    near = _start("style", QUARTER, 3, style_id="near", version=1)
    scratch = choose_init("scratch", QUARTER, own=own, base=base, nearest=lambda: (near, 0.1))
    assert scratch.state is None and scratch.info == {"requested": "scratch", "kind": "scratch"}
    # auto: a retrain continues; a new style takes the base; else the nearest style.
    assert choose_init("auto", QUARTER, own=own, base=base).info["kind"] == "continue"
    assert choose_init("auto", QUARTER, base=base).info["name"] == "base.safetensors"
    found = choose_init("auto", QUARTER, nearest=lambda: (near, 0.125))
    assert found.info == {
        "requested": "auto",
        "kind": "style",
        "sha256": near.sha256,
        "style_id": "near",
        "version": 1,
        "distance": 0.125,
    }
    assert choose_init("auto", QUARTER).info["kind"] == "scratch"
    # The loaded state is the start's weights.
    chosen = choose_init("base", QUARTER, base=base)
    expected = build_generator(QUARTER)
    expected.load_state_dict(chosen.state)
    torch.manual_seed(2)
    assert torch.equal(
        next(iter(build_generator(QUARTER).state_dict().values())),
        next(iter(expected.state_dict().values())),
    )


def test_an_incompatible_shape_falls_back_with_a_note() -> None:
    wide_base = _start("base", HALF, 2, name="wide.safetensors")
    wide_style = _start("style", HALF, 3, style_id="wide", version=1)
    choice = choose_init("base", QUARTER, base=wide_base)
    assert choice.state is None and choice.info["kind"] == "scratch"
    assert "another generator shape" in choice.info["note"]
    assert choice.info["note"].endswith("started from scratch")
    named = choose_init("wide", QUARTER, named=wide_style)
    assert named.info["kind"] == "scratch" and "style 'wide'" in named.info["note"]
    missing = choose_init("nobody", QUARTER)
    assert "no published version" in missing.info["note"]
    assert "no base generator" in choose_init("base", QUARTER).info["note"]


def test_corrupt_start_weights_fall_back_to_scratch() -> None:
    good = _weights(QUARTER, 1)
    bad = Start("base", QUARTER, lambda: good, "0" * 64, name="tampered.safetensors")
    choice = choose_init("base", QUARTER, base=bad)
    assert choice.state is None and "cannot load" in choice.info["note"]


def test_shipped_bases_match_their_manifest(tmp_path: Path) -> None:
    # Every base listed and present is found for its exact shape, with a correct digest.
    for start in base_starts():
        assert sha256_hex(start.load()) == start.sha256
        assert find_base(start.config) == start
    # A manifest naming a missing file lists nothing; a broken manifest is ignored.
    (tmp_path / "manifest.json").write_text(
        json.dumps({"bases": [{"file": "gone.safetensors", "sha256": "0", "config": {}}]})
    )
    assert base_starts(tmp_path) == []
    (tmp_path / "manifest.json").write_text("{broken")
    assert base_starts(tmp_path) == [] and find_base(QUARTER, tmp_path) is None


def test_auto_picks_the_nearest_compatible_registered_style(tmp_path: Path, cache: Path) -> None:
    store = open_store(f"file://{tmp_path / 'models'}")
    texture = samples.sample(samples.TEXTURE)
    texture.thumbnail((96, 96))
    photo = samples.sample("astronaut")
    photo.thumbnail((96, 96))
    # "twin" has the new painting itself as its style; "other" a photo; "wide" the same
    # painting but another generator shape (never a candidate).
    for sid, image, config, seed in (
        ("twin", texture, QUARTER, 1),
        ("other", photo, QUARTER, 2),
        ("wide", texture, HALF, 3),
    ):
        store.create(_png(image), name=sid, style_id=sid)
        # "other" is published as the demo styles used to be: without its shape in the
        # metadata (read from the weights' header instead).
        metadata = {} if sid == "other" else {"config": config.to_dict()}
        store.publish(sid, _weights(config, seed), metadata=metadata)
    store.create(_png(texture), name="new", style_id="new")
    params = TrainParams(width=0.25, style_size=64, image_size=64)
    choice = resolve_init(store, "new", params, _png(texture), device="cpu", cache_dir=cache)
    assert choice.info["kind"] == "style" and choice.info["style_id"] == "twin"
    assert choice.info["distance"] == pytest.approx(0.0, abs=1e-3)
    assert choice.state is not None
    # Explicit choices through the store: a named style of another shape, and a retrain.
    named = resolve_init(
        store,
        "new",
        TrainParams(width=0.25, init="wide"),
        b"",
        device="cpu",
        cache_dir=cache,
    )
    assert named.info["kind"] == "scratch" and "another generator shape" in named.info["note"]
    again = resolve_init(store, "twin", TrainParams(width=0.25), b"", device="cpu", cache_dir=cache)
    assert again.info["kind"] == "continue" and again.info["version"] == 1
    # Each painting's signature was measured once and kept.
    assert len(list((cache / "signatures").glob("*.safetensors"))) == 2
    # Without the twin, the nearest compatible style is "other" (never "wide").
    store.delete("twin")
    second = resolve_init(store, "new", params, _png(texture), device="cpu", cache_dir=cache)
    assert second.info["style_id"] == "other" and second.info["distance"] > 0


def test_training_starts_from_the_given_weights(content_dir: Path, style_image) -> None:
    params = TrainParams(
        iterations=1,
        image_size=64,
        style_size=64,
        batch_size=1,
        width=0.25,
        lr=1e-12,
        yardstick_steps=0,
    )
    torch.manual_seed(42)
    start = build_generator(params.generator_config).state_dict()
    result = train(
        style_image, content_dir, params, init_state=start, init_info={"kind": "base", "name": "x"}
    )
    assert result.metrics["init"] == {"kind": "base", "name": "x"}
    # One step at a negligible learning rate: the weights are still the start's.
    for key, value in result.generator.state_dict().items():
        assert torch.allclose(value, start[key], atol=1e-6), key
    scratch = train(style_image, content_dir, params)
    assert scratch.metrics["init"] == {"kind": "scratch"}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A cache root of its own (signatures land here) that sees the real VGG weights."""
    from stylenet.lossnet import default_cache_dir

    root = tmp_path / "cache"
    root.mkdir()
    (root / "lossnet").symlink_to(default_cache_dir() / "lossnet")
    return root


def test_nearest_style_skips_a_candidate_without_a_finite_distance() -> None:
    """A NaN distance (a signature of empty or overflowed Grams) must never win."""
    from stylenet.warmstart import nearest_style

    nan_first = _start("style", QUARTER, 1, style_id="broken", version=1)
    fine = _start("style", QUARTER, 2, style_id="fine", version=1)
    target = {"relu1_1": torch.zeros(4, 4)}
    signatures = {
        "broken": {"relu1_1": torch.full((4, 4), float("nan"))},
        "fine": {"relu1_1": torch.ones(4, 4)},
    }
    found = nearest_style(
        [nan_first, fine], lambda c: signatures[c.style_id], target, {"relu1_1": 1.0}
    )
    assert found is not None and found[0].style_id == "fine" and found[1] == 1.0
    assert (
        nearest_style([nan_first], lambda c: signatures[c.style_id], target, {"relu1_1": 1.0})
        is None
    )
