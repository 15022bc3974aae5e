"""Training with real photos and the real VGGs: loss drops, resume is exact, clear errors."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import pytest
import torch

from stylenet import ContentImagesError, InvalidParams, Progress, TrainParams, train
from stylenet.data import ContentImages, find_images, split_holdout
from stylenet.train import learning_rate

TINY = {"image_size": 64, "style_size": 64, "batch_size": 2, "width": 0.5, "holdout": 2}


class Stop(Exception):
    pass


# johnson (VGG16, content at relu2_2) stalls at lr 1e-2 and trains at its default 1e-3.
@pytest.mark.parametrize(("preset", "lr"), [("ulyanov", 1e-2), ("johnson", 1e-3)])
def test_thirty_iterations_lower_the_held_out_loss(
    content_dir: Path, style_image, untrained_holdout_loss, preset: str, lr: float
) -> None:
    params = TrainParams(iterations=30, lr=lr, progress_every=10, preset=preset, **TINY)
    reports: list[Progress] = []
    result = train(style_image, content_dir, params, on_progress=reports.append)
    before, after = untrained_holdout_loss(params), result.metrics["holdout_loss"]
    print(f"held-out total loss {before['total']:.3g} -> {after['total']:.3g}")
    assert after["total"] < 0.85 * before["total"]
    assert after["style"] < before["style"]
    assert [r.iteration for r in reports] == [10, 20, 30]
    assert all(r.total == 30 and r.images_per_s > 0 and r.eta_s >= 0 for r in reports)
    assert reports[-1].eta_s == 0
    held = split_holdout(find_images(content_dir), params.holdout)[1]
    assert sorted(result.metrics["holdout_images"]) == sorted(p.name for p in held)
    assert result.metrics["content_images"] == 4
    assert result.metrics["images_per_s"] > 0


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_resume_reaches_the_same_parameters(
    tmp_path: Path, content_dir: Path, style_image, norm
) -> None:
    params = TrainParams(iterations=6, checkpoint_every=3, progress_every=3, norm=norm, **TINY)
    straight = train(style_image, content_dir, params).generator

    def crash_at_3(progress: Progress) -> None:
        if progress.iteration == 3:
            raise Stop

    with pytest.raises(Stop):
        train(style_image, content_dir, params, on_progress=crash_at_3, checkpoint_dir=tmp_path)
    resumed = train(style_image, content_dir, params, checkpoint_dir=tmp_path)
    assert resumed.metrics["resumed_from"] == 3
    expected, actual = _state(straight), _state(resumed.generator)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_resume_refuses_other_params(tmp_path: Path, content_dir: Path, style_image) -> None:
    params = TrainParams(iterations=2, checkpoint_every=1, **TINY)
    train(style_image, content_dir, params, checkpoint_dir=tmp_path)
    with pytest.raises(Exception, match="other training parameters"):
        train(
            style_image,
            content_dir,
            TrainParams(iterations=2, lr=0.5, **TINY),
            checkpoint_dir=tmp_path,
        )


def test_unreadable_content_is_skipped_with_a_warning(
    tmp_path: Path, content_dir: Path, style_image, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mixed" / "nested"
    folder.mkdir(parents=True)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("ignored")
    (folder / "ok.png").write_bytes((content_dir / "chelsea.png").read_bytes())
    (folder / "also_ok.png").write_bytes((content_dir / "coffee.png").read_bytes())
    with caplog.at_level(logging.WARNING):
        result = train(
            style_image, tmp_path / "mixed", TrainParams(iterations=2, **{**TINY, "holdout": 0})
        )
    assert "broken.jpg" in caplog.text
    assert result.metrics["content_images"] == 3  # the broken file is listed, never used


def test_empty_or_missing_content_folder_is_a_clear_error(tmp_path: Path, style_image) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ContentImagesError, match="no usable content images"):
        train(style_image, tmp_path / "empty", TrainParams(iterations=1, **TINY))
    with pytest.raises(ContentImagesError, match="does not exist"):
        train(style_image, tmp_path / "nowhere", TrainParams(iterations=1, **TINY))


def _check_usable(folder: Path) -> str:
    """``check_usable``'s error for ``folder``; as root, in a child running as "nobody"."""

    def check() -> str:
        try:
            ContentImages(sorted(folder.iterdir()), 32).check_usable(str(folder))
        except ContentImagesError as exc:
            return str(exc)
        return "usable"

    if os.geteuid() != 0:
        return check()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody (root reads anything), report, exit at once
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write, check().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_unreadable_content_photos_are_named_unreadable(content_dir: Path) -> None:
    # What the built image did before its files kept the umask's mode: photos installed by
    # root with mode 0600, a worker running as another user.
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        for name in ("chelsea.png", "coffee.png"):
            (folder / name).write_bytes((content_dir / name).read_bytes())
            (folder / name).chmod(0o600 if os.geteuid() == 0 else 0)
        message = _check_usable(folder)
    assert "2 of 2 content images" in message and "cannot be read" in message, message
    assert "permission denied" in message and "no usable" not in message


def test_holdout_never_trains_and_keeps_one_image(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    train_paths, held = split_holdout(paths, 2)
    assert len(held) == 2 and not set(held) & set(train_paths)
    assert split_holdout(paths[:1], 3) == (paths[:1], [])
    assert split_holdout(paths, 2)[1] == split_holdout(list(reversed(paths)), 2)[1]


def test_params_validation_and_round_trip() -> None:
    params = TrainParams(iterations=10, style_layers={"relu1_1": 1.0, "relu3_1": 0.5})
    assert TrainParams.from_dict(params.to_dict()) == params
    with pytest.raises(InvalidParams, match="colour"):
        TrainParams.from_dict({"colour": 1})
    for bad in (
        {"image_size": 8},
        {"iterations": 0},
        {"lr": -1},
        {"arch": "gan"},
        {"style_layers": {"relu9_9": 1.0}},
        {"preset": "x"},
        {"image_size": "big"},
    ):
        with pytest.raises(InvalidParams):
            TrainParams.from_dict(bad)


def test_learning_rate_schedules() -> None:
    cosine = TrainParams(iterations=100, lr=1e-3)
    assert learning_rate(cosine, 0) == pytest.approx(1e-3)
    assert learning_rate(cosine, 100) == pytest.approx(1e-4)
    step = TrainParams(iterations=90, lr=1e-3, lr_schedule="step")
    assert learning_rate(step, 59) == 1e-3 and learning_rate(step, 60) == pytest.approx(1e-4)
