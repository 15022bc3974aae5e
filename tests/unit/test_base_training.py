"""Reptile base training with the real VGG19: exact, resumable, a normal generator file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylenet import (
    InvalidParams,
    ModelFileError,
    TrainParams,
    build_generator,
    load_generator,
    train,
)
from stylenet.base import (
    BaseParams,
    BaseProgress,
    BaseResult,
    meta_step_size,
    painting_index,
    save_base,
    train_base,
)
from stylenet.cli import main

# 64 px, width 0.25, 4 outer steps × 2 inner steps: a run is a few seconds on one core.
TINY = {
    "image_size": 64,
    "style_size": 64,
    "batch_size": 2,
    "width": 0.25,
    "holdout": 0,
    "outer_steps": 4,
    "inner_steps": 2,
    "checkpoint_every": 2,
}


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def paintings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three synthetic 'paintings' with different statistics (stripes, checks, blobs)."""
    folder = tmp_path_factory.mktemp("paintings")
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:80, 0:96]
    stripes = np.stack([128 + 120 * np.sin(x / 3.0), 60 + 0 * x, 200 - x], -1)
    checks = np.where(((x // 8) + (y // 8)) % 2, 230, 30)[..., None].repeat(3, -1)
    blobs = np.kron(rng.integers(0, 256, (10, 12, 3)), np.ones((8, 8, 1)))
    paths = []
    for name, array in (("stripes", stripes), ("checks", checks), ("blobs", blobs)):
        noisy = array + rng.normal(0, 12, array.shape)
        path = folder / f"{name}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic content 'photos': smooth gradients with shapes and noise."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:72, 0:88]
    for i in range(3):
        base = np.stack([x * 2.5, y * 3.0, (x + y) * (1 + i)], -1) % 256
        base[20 + 5 * i : 45, 30 : 60 - 4 * i] = rng.integers(0, 256, 3)
        noisy = base + rng.normal(0, 8, base.shape)
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(folder / f"photo{i}.png")
    return folder


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    expected, actual = _state(a), _state(b)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


@pytest.fixture(scope="module")
def straight_run(paintings: list[Path], photos: Path) -> tuple[BaseResult, list[BaseProgress]]:
    """An uninterrupted tiny run and its progress reports."""
    reports: list[BaseProgress] = []
    result = train_base(paintings, photos, BaseParams(**TINY), on_progress=reports.append)
    return result, reports


@pytest.fixture
def straight(straight_run: tuple[BaseResult, list[BaseProgress]]) -> BaseResult:
    """The uninterrupted tiny run (the same for every test of this file)."""
    return straight_run[0]


def test_a_run_reports_and_measures(
    straight_run: tuple[BaseResult, list[BaseProgress]], paintings: list[Path]
) -> None:
    straight, reports = straight_run
    assert [r.outer_step for r in reports] == [1, 2, 3, 4]
    assert all(r.total == 4 and np.isfinite(r.inner_loss) and r.inner_loss > 0 for r in reports)
    params = BaseParams(**TINY)
    assert [r.meta_lr for r in reports] == [meta_step_size(params, i) for i in range(4)]
    assert [r.meta_lr for r in reports] == [1.0, 0.75, 0.5, 0.25]
    names = [p.name for p in paintings]
    assert [r.painting for r in reports] == [names[painting_index(0, 3, i)] for i in range(4)]
    # An epoch visits every painting once.
    assert sorted(painting_index(5, 3, i) for i in range(3, 6)) == [0, 1, 2]
    metrics = straight.metrics
    assert metrics["kind"] == "base" and metrics["outer_steps"] == 4
    assert metrics["resumed_from"] == 0 and metrics["content_images"] == 3
    assert metrics["images_per_s"] > 0 and metrics["seconds"] > 0
    assert metrics["paintings"] == [
        {"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in paintings
    ]
    json.dumps(metrics)  # JSON-able, as a generator file's metadata must be
    assert not straight.generator.training


def test_the_same_seed_gives_the_same_base(
    straight: BaseResult, paintings: list[Path], photos: Path
) -> None:
    again = train_base(paintings, photos, BaseParams(**TINY))
    _assert_same(straight.generator, again.generator)


def test_a_resumed_run_reaches_the_same_weights(
    tmp_path: Path, straight: BaseResult, paintings: list[Path], photos: Path
) -> None:
    def crash_after_2(progress: BaseProgress) -> None:
        if progress.outer_step == 3:  # after the checkpoint of step 2, before that of 4
            raise Stop

    params = BaseParams(**TINY)
    with pytest.raises(Stop):
        train_base(paintings, photos, params, checkpoint_dir=tmp_path, on_progress=crash_after_2)
    # A resume may change what does not shape the result.
    other = BaseParams(**{**TINY, "checkpoint_every": 0})
    resumed = train_base(paintings, photos, other, checkpoint_dir=tmp_path)
    assert resumed.metrics["resumed_from"] == 2
    _assert_same(straight.generator, resumed.generator)
    # The final checkpoint is complete: resuming it trains nothing and changes nothing.
    again = train_base(paintings, photos, params, checkpoint_dir=tmp_path)
    assert again.metrics["resumed_from"] == 4
    _assert_same(straight.generator, again.generator)


def test_a_checkpoint_of_other_params_or_paintings_is_refused(
    tmp_path: Path, paintings: list[Path], photos: Path
) -> None:
    params = BaseParams(**{**TINY, "outer_steps": 1})
    train_base(paintings, photos, params, checkpoint_dir=tmp_path)
    with pytest.raises(ModelFileError, match="other parameters or paintings"):
        train_base(
            paintings,
            photos,
            BaseParams(**{**TINY, "outer_steps": 1, "inner_lr": 0.01}),
            checkpoint_dir=tmp_path,
        )
    with pytest.raises(ModelFileError, match="other parameters or paintings"):
        train_base(paintings[:2], photos, params, checkpoint_dir=tmp_path)


def test_one_outer_step_at_meta_lr_1_is_the_inner_loop(paintings: list[Path], photos: Path) -> None:
    """θ ← θ + ε(θ' − θ): ε = 1 gives θ' exactly, ε = 0.5 halfway, and θ' is train()'s."""
    params = BaseParams(**{**TINY, "outer_steps": 1})
    whole = train_base(paintings, photos, params).generator
    # The inner loop is stylenet.train's step: same init, crops, Adam, constant lr.
    painting = paintings[painting_index(params.seed, len(paintings), 0)]
    inner = TrainParams(
        **{k: v for k, v in TINY.items() if k not in ("outer_steps", "inner_steps")},
        iterations=2,
        lr=params.inner_lr,
        lr_schedule="constant",
        yardstick_steps=0,
    )
    trained = train(painting, photos, inner).generator
    _assert_same(trained, whole)

    torch.manual_seed(params.seed)  # the base's initialization
    init = _state(build_generator(whole.config))
    half = train_base(paintings, photos, BaseParams(**{**TINY, "outer_steps": 1, "meta_lr": 0.5}))
    moved = 0
    for key, value in _state(half.generator).items():
        expected = init[key] + 0.5 * (_state(trained)[key] - init[key])
        assert torch.allclose(value, expected, atol=1e-6), key
        moved += int(not torch.equal(value, init[key]))
    assert moved > len(init) // 2  # θ moved (most tensors; not just a few)


def test_the_saved_base_is_a_generator_file_of_kind_base(
    tmp_path: Path, straight: BaseResult, paintings: list[Path]
) -> None:
    params = BaseParams(**TINY)
    digest = save_base(tmp_path / "base.safetensors", straight, params)
    data = (tmp_path / "base.safetensors").read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    generator, info = load_generator(data)
    _assert_same(straight.generator, generator)
    assert info.metrics["kind"] == "base"
    assert BaseParams.from_dict(info.metrics["base_params"]) == params
    assert [p["sha256"] for p in info.metrics["paintings"]] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in paintings
    ]
    # train_params are valid TrainParams: what an adaptation of the base starts from.
    adapt = TrainParams.from_dict(info.train_params)
    assert adapt.generator_config == info.config and info.lossnet == "keras-vgg19"
    save_base(tmp_path / "half.safetensors", straight, params, dtype="float16")
    assert load_generator(tmp_path / "half.safetensors")[1].dtype == "float16"


def test_params_are_strict_and_round_trip() -> None:
    params = BaseParams(width=1.0, outer_steps=10, seed=3)
    assert BaseParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    for bad, field in [
        ({"outer_steps": 0}, "outer_steps"),
        ({"inner_steps": 1.5}, "inner_steps"),
        ({"meta_lr": 1.5}, "meta_lr"),
        ({"width": "1"}, "width"),
        ({"iterations": 5}, "iterations"),
    ]:
        with pytest.raises(InvalidParams) as caught:
            BaseParams.from_dict(bad)
        assert caught.value.field == field
    with pytest.raises(InvalidParams, match="painting"):
        train_base([], Path("."), params)


def test_cli_trains_and_writes_a_base(
    tmp_path: Path, paintings: list[Path], photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "base.safetensors"
    argv = ["base", "train", "--styles", str(paintings[0].parent), "--content", str(photos)]
    argv += ["--out", str(out), "--outer-steps", "2", "--inner-steps", "1", "--image-size", "64"]
    argv += ["--style-size", "64", "--width", "0.25", "--batch-size", "1", "--device", "cpu"]
    argv += ["--holdout", "0", "--dtype", "float16"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "outer 2/2" in captured.err
    report = json.loads(captured.out)
    assert report["out"] == str(out) and len(report["metrics"]["paintings"]) == 3
    _, info = load_generator(out)
    assert info.metrics["kind"] == "base" and info.dtype == "float16"
    assert info.metrics["base_params"]["outer_steps"] == 2
