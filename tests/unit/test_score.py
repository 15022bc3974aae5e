"""The style score: one fixed reference for every style, on real photographs only."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from stylenet import TrainParams, train
from stylenet.corpus import EVALUATION_PHOTOS, EVALUATION_TAG, load_manifest
from stylenet.data import find_images, split_content
from stylenet.score import SCORE_STEPS, TrajectoryCache, score_generator

TINY = TrainParams(
    iterations=3, image_size=64, style_size=64, batch_size=1, width=0.25, yardstick_steps=3
)


def test_evaluation_photos_are_real_photographs_of_the_manifest() -> None:
    photos = {p["file"]: p for p in load_manifest()["photos"]}
    assert len(EVALUATION_PHOTOS) >= 4
    for name in EVALUATION_PHOTOS:
        tags = set(photos[name]["tags"])
        # Never clip-art cut-outs, telescope images, flattened or greyscale pictures.
        assert EVALUATION_TAG in tags
        assert not tags & {"cut-out", "flattened", "astronomy", "greyscale"}, name
        assert photos[name]["source"] != "debian:tuxpaint-stamps-default"


@pytest.fixture
def corpus_like(tmp_path: Path, content_dir: Path) -> Path:
    """A folder like the installed corpus: evaluation photos among clip-art and photos."""
    folder = tmp_path / "content"
    folder.mkdir()
    sources = find_images(content_dir)
    for i, name in enumerate(EVALUATION_PHOTOS):
        shutil.copy(sources[i % len(sources)], folder / name)
    for i, source in enumerate(sources):
        shutil.copy(source, folder / f"tuxpaint-stamp-{i}.png")
    return folder


def test_the_evaluation_photos_are_held_out_whatever_holdout_says(corpus_like: Path) -> None:
    paths = find_images(corpus_like)
    for holdout in (0, 1, 4, 10):
        split = split_content(paths, holdout)
        assert split.verified
        assert sorted(p.name for p in split.held) == sorted(EVALUATION_PHOTOS)
        assert not {p.name for p in split.train} & set(EVALUATION_PHOTOS)
        # A non-photo is never held out.
        assert all(p.name in EVALUATION_PHOTOS for p in split.held)


def test_a_folder_without_evaluation_photos_is_scored_unverified(content_dir: Path) -> None:
    split = split_content(find_images(content_dir), 2)
    assert not split.verified and len(split.held) == 2 and split.train


def test_the_score_does_not_depend_on_the_training(
    corpus_like: Path, style_image: Image.Image, tmp_path: Path
) -> None:
    cache = TrajectoryCache(tmp_path / "trajectories")
    reports = []
    for iterations in (2, 6):
        params = replace(TINY, iterations=iterations)
        result = train(style_image, corpus_like, params)
        assert result.metrics["holdout_verified"] is True
        assert "yardstick" not in result.metrics  # scored after publishing, not in training
        held = [corpus_like / n for n in result.metrics["holdout_images"]]
        reports.append(
            score_generator(
                result.generator,
                style_image,
                held,
                params,
                verified=True,
                trajectory_cache=cache,
                size=64,
            )
        )
    short, long = reports
    json.dumps(long, allow_nan=False)
    # Same steps, size, style size and photos whatever the training's length.
    for key in ("steps", "image_size", "style_size", "photos", "lr", "style_ramp"):
        assert short[key] == long[key], key
    assert short["steps"] == TINY.yardstick_steps and short["photos"] == "evaluation"
    assert [e["name"] for e in short["images"]] == sorted(EVALUATION_PHOTOS)
    assert math.isfinite(long["r_mean"]) and long["status"] == "done"
    # The reference is the default steps at 256 px: this tiny one is not it.
    assert short["reference"] is False and SCORE_STEPS == TrainParams().yardstick_steps == 200
    # Both generators were measured against the same optimization runs (one computed, one
    # read back from the cache).
    for a, b in zip(short["images"], long["images"], strict=True):
        assert a["optimization_final"] == b["optimization_final"]
    # One entry per distinct photo (the fixture repeats its few sample photos).
    distinct = {(corpus_like / n).read_bytes() for n in EVALUATION_PHOTOS}
    assert len(list((tmp_path / "trajectories").glob("*.json"))) == len(distinct)
    bounds = {e["bound"] for e in long["images"]}
    assert long["bound"] == ("upper" if "upper" in bounds else long["bound"])


def test_an_unreadable_trajectory_cache_entry_is_computed_again(tmp_path: Path) -> None:
    cache = TrajectoryCache(tmp_path)
    (tmp_path / "abc.json").write_text("{not json")
    assert cache.get("abc") is None and cache.get("missing") is None
