"""Clips through stylenet.video: formats, audio copied, bad input refused, nothing left."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import nn

from stylenet.generators import build_generator
from stylenet.temporal import ClipStatistics
from stylenet.video import (
    LocalStylizer,
    UnsupportedVideo,
    VideoError,
    VideoLimits,
    VideoTooLarge,
    sniff_video,
    stylize_clip,
)
from tests.clip_testing import clip_summary, huge_gif_header, make_clip


@pytest.fixture(scope="module")
def generator() -> nn.Module:
    torch.manual_seed(0)
    return build_generator(arch="residual", width=0.25).eval()


class CountingStylizer(LocalStylizer):
    """The local stylizer, recording each call (what pass 1 and pass 2 saw)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__(generator)
        self.sampled: list[int] = []
        self.batches: list[int] = []

    def statistics(self, frames: Sequence[np.ndarray]) -> ClipStatistics:
        self.sampled.append(len(frames))
        return super().statistics(frames)

    def stylize(
        self, frames: Sequence[np.ndarray], stats: ClipStatistics | None
    ) -> list[np.ndarray]:
        self.batches.append(len(frames))
        return super().stylize(frames, stats)


def _run(data: bytes, generator: nn.Module, **kwargs: object) -> tuple[bytes, object]:
    out = io.BytesIO()
    result = stylize_clip(data, out, LocalStylizer(generator), **kwargs)  # type: ignore[arg-type]
    return out.getvalue(), result


def test_mp4_with_audio_keeps_frames_size_and_the_audio_packets(generator: nn.Module) -> None:
    source = make_clip("mp4", frames=7, width=66, height=50, audio=True)
    stylizer = CountingStylizer(generator)
    out = io.BytesIO()
    result = stylize_clip(source, out, stylizer, batch_size=3, temporal="shared", stats_frames=4)
    made, given = clip_summary(out.getvalue()), clip_summary(source)
    assert made["format"] == given["format"]
    assert made["frames"] == 7 and result.frames == 7
    assert made["size"] == (66, 50)
    assert made["audio"] == "aac" and result.audio == "copied"
    assert made["audio_packets"] == given["audio_packets"]
    assert stylizer.batches == [3, 3, 1]  # streamed in batches, never the whole clip
    assert stylizer.sampled == [4]  # the shared statistics from a sample of 4 of 7 frames


@pytest.mark.parametrize(
    ("container", "output", "family"),
    [("webm", None, "matroska,webm"), ("gif", None, "gif"), ("mp4", "gif", "gif")],
)
def test_containers_and_a_requested_output(
    generator: nn.Module, container: str, output: str | None, family: str
) -> None:
    data, _result = _run(make_clip(container, frames=4), generator, output=output)
    made = clip_summary(data)
    assert made["format"] == family
    assert made["frames"] == 4
    assert made["size"] == (64, 48)


@pytest.mark.parametrize(("container", "to_path"), [("mp4", True), ("mp4", False), ("webm", True)])
def test_a_clip_longer_than_the_encoder_delay_keeps_every_frame_and_its_time(
    generator: nn.Module, container: str, to_path: bool, tmp_path: Path
) -> None:
    """Encoders hold frames back (x264 about a dozen): the first packets are muxed while
    frames still come. A writer that took the muxer's time base (MP4 changes it to 1/16000
    at the header) for its frames failed there, EINVAL, on every clip past ~12 frames."""
    frames, fps = 36, 24
    source = make_clip(container, frames=frames, fps=fps)
    if to_path:
        target = tmp_path / f"out.{container}"
        stylize_clip(source, target, LocalStylizer(generator), batch_size=4)
        data = target.read_bytes()
    else:
        data, _result = _run(source, generator, batch_size=4)
    with av.open(io.BytesIO(data)) as clip:
        times = [frame.time for frame in clip.decode(clip.streams.video[0])]
    assert len(times) == frames
    assert times == pytest.approx([index / fps for index in range(frames)], abs=0.002)


def test_animated_webp_in_and_out(generator: nn.Module) -> None:
    source = make_clip("webp", frames=4)
    assert sniff_video(source) == "webp"
    data, result = _run(source, generator)
    assert sniff_video(data) == "webp"
    assert result.frames == 4  # type: ignore[attr-defined]


def test_per_frame_and_shared_differ_and_stylize(generator: nn.Module) -> None:
    source = make_clip("mp4", frames=4)
    shared = np.stack(clip_summary(_run(source, generator, temporal="shared")[0])["pixels"])
    per_frame = np.stack(clip_summary(_run(source, generator, temporal="per_frame")[0])["pixels"])
    original = np.stack(clip_summary(source)["pixels"])
    assert np.abs(shared.astype(int) - per_frame).mean() > 1
    assert np.abs(shared.astype(int) - original).mean() > 10


def test_max_side_scales_to_even_sides(generator: nn.Module) -> None:
    data, _result = _run(make_clip("mp4", frames=2, width=96, height=64), generator, max_side=50)
    assert clip_summary(data)["size"] == (50, 32)


def test_a_path_target_is_written_whole_or_not_at_all(generator: nn.Module, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    stylize_clip(make_clip("mp4", frames=2), target, LocalStylizer(generator))
    assert clip_summary(target.read_bytes())["frames"] == 2
    bad = tmp_path / "bad.mp4"
    with pytest.raises(VideoTooLarge):
        stylize_clip(
            make_clip("mp4", frames=6),
            bad,
            LocalStylizer(generator),
            temporal="per_frame",
            limits=VideoLimits(max_frames=3),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


# --- bad input ------------------------------------------------------------------------------


def test_truncated_clip_is_a_video_error(generator: nn.Module) -> None:
    data = make_clip("mp4", frames=6)
    with pytest.raises(VideoError):
        _run(data[: len(data) // 2], generator)


def test_truncated_gif_is_a_video_error_or_fewer_frames(generator: nn.Module) -> None:
    data = make_clip("gif", frames=6)
    try:
        _made, result = _run(data[: len(data) // 2], generator)
    except VideoError:
        return
    assert result.frames < 6  # type: ignore[attr-defined]


def test_unsupported_codec_is_refused_before_decoding(generator: nn.Module) -> None:
    with pytest.raises(UnsupportedVideo, match="mjpeg"):
        _run(make_clip("matroska", frames=2), generator)


def test_not_a_clip_is_refused(generator: nn.Module) -> None:
    with pytest.raises(UnsupportedVideo):
        _run(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, generator)


def test_huge_dimensions_are_refused_from_the_header(generator: nn.Module) -> None:
    with pytest.raises(VideoTooLarge) as caught:
        _run(huge_gif_header(30000, 30000), generator, limits=VideoLimits(max_frame_pixels=4096**2))
    assert caught.value.field == "frame_pixels"
    assert caught.value.actual == 30000 * 30000


def test_absurd_frame_count_is_refused_while_counting(generator: nn.Module) -> None:
    stylizer = CountingStylizer(generator)
    # A GIF's header declares no frame count: the decoder's count catches it.
    with pytest.raises(VideoTooLarge) as caught:
        stylize_clip(
            make_clip("gif", frames=12), io.BytesIO(), stylizer, limits=VideoLimits(max_frames=5)
        )
    assert caught.value.field == "frames"
    assert stylizer.batches == [] and stylizer.sampled == []  # refused before any work


def test_absurd_duration_is_refused_from_the_header(generator: nn.Module) -> None:
    data = make_clip("mp4", frames=20, fps=2)  # 10 s declared
    stylizer = CountingStylizer(generator)
    with pytest.raises(VideoTooLarge) as caught:
        stylize_clip(data, io.BytesIO(), stylizer, limits=VideoLimits(max_seconds=5))
    assert caught.value.field == "seconds"
    assert stylizer.batches == []


def test_total_pixels_are_counted(generator: nn.Module) -> None:
    with pytest.raises(VideoTooLarge) as caught:
        _run(
            make_clip("mp4", frames=6), generator, limits=VideoLimits(max_total_pixels=64 * 48 * 4)
        )
    assert caught.value.field == "total_pixels"
