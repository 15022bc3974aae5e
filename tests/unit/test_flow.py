"""The ``flow`` temporal mode: warping, block matching, decoder motion vectors, blending."""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stylenet.flow import block_flow, luma, motion_flow, warp
from stylenet.flow_blend import FlowBlender
from stylenet.generators import build_generator
from stylenet.temporal import ClipStatistics
from stylenet.video import LocalStylizer, stylize_clip
from stylenet.video_read import ClipReader, VideoLimits
from tests.clip_testing import clip_summary, make_clip, moving_frame


@pytest.fixture(scope="module")
def generator() -> nn.Module:
    torch.manual_seed(0)
    return build_generator(arch="residual", width=0.25).eval()


def _texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth random RGB texture, 3×H×W in 0–255 (blocks have something to match)."""
    noise = torch.rand(1, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=(height, width), mode="bicubic")[0].clamp(0, 1) * 255


def test_warp_moves_pixels_by_a_known_motion_field() -> None:
    image = _texture(48, 64)
    flow = torch.zeros(2, 48, 64)
    flow[0], flow[1] = -3.0, -2.0  # each pixel comes from 3 left, 2 up: content moves right/down
    out, inside = warp(image, flow)
    assert torch.allclose(out[:, 2:, 3:], image[:, :-2, :-3], atol=1e-3)
    assert not inside[:, :3].any() and not inside[:2].any() and inside[2:, 3:].all()
    # A field that differs per pixel: the left half still, the right half from 5 px right.
    flow = torch.zeros(2, 48, 64)
    flow[0, :, 32:] = 5.0
    out, _ = warp(image, flow)
    assert torch.allclose(out[:, :, :32], image[:, :, :32], atol=1e-3)
    assert torch.allclose(out[:, :, 32:59], image[:, :, 37:64], atol=1e-3)
    # Half a pixel: the mean of the two neighbours.
    flow = torch.zeros(2, 48, 64)
    flow[0] = 0.5
    out, _ = warp(image, flow)
    assert torch.allclose(out[:, :, :-1], (image[:, :, :-1] + image[:, :, 1:]) / 2, atol=1e-3)


def test_block_matching_finds_a_shift() -> None:
    previous = _texture(96, 128, seed=1)
    current = torch.roll(previous, shifts=(2, 5), dims=(1, 2))  # moved 5 right, 2 down
    flow = block_flow(luma(previous), luma(current))
    interior = flow[:, 12:-12, 12:-12]
    assert interior[0].median().item() == pytest.approx(-5.0, abs=0.5)
    assert interior[1].median().item() == pytest.approx(-2.0, abs=0.5)
    warped, _ = warp(previous, flow)
    assert (warped - current)[:, 12:-12, 12:-12].abs().mean().item() < 2.0


def test_motion_vectors_are_read_from_a_real_h264_clip() -> None:
    # The square moves 4 px right a frame (tests.clip_testing.moving_frame), 64×48.
    data = make_clip("mp4", frames=6, width=64, height=48)
    found = []
    with ClipReader(data, VideoLimits()) as reader:
        for pixels, _time, motion in reader.frames_with_motion((32, 24)):
            assert pixels.shape == (24, 32, 3)
            found.append(motion)
    assert found[0] is None  # the intra frame carries none
    vectors = [m for m in found if m is not None]
    assert vectors, "the decoder exported no motion vectors"
    assert all((m.width, m.height) == (64, 48) for m in vectors)  # the coded frame's pixels
    # Some block on the square's rows was found 4 px (or a multiple: an older reference)
    # to the left, and nothing moved vertically there.
    square = [(m.dx[i], m.dy[i]) for m in vectors for i in range(m.x.size) if 12 <= m.y[i] < 28]
    moved = [dx for dx, dy in square if dx < 0 and dy == 0]
    assert moved and all(dx % 4 == 0 for dx in moved)
    # Dense at the frames' size: displacements scaled with the frames (half size here).
    motion = next(m for m in vectors if (m.dx < 0).any())
    flow, known = motion_flow(motion, (32, 24))
    assert known.any()
    assert set(flow[0][known].unique().tolist()) <= {v / 2 for v in motion.dx.tolist()}
    # Without asking, none are exported.
    with ClipReader(data, VideoLimits()) as reader:
        assert all(m is None for _, _, m in reader.frames_with_motion((64, 48), motion=False))


def test_identical_frames_give_per_frame_output_then_stay_still(generator: nn.Module) -> None:
    frame = moving_frame(0, 64, 48)
    fresh = LocalStylizer(generator).stylize([frame], None)[0]
    blender = FlowBlender(0.6)
    outputs = [blender.blend(frame, fresh) for _ in range(4)]
    for out in outputs:
        np.testing.assert_array_equal(out, fresh)
    # Through a clip (GIF: lossless frames in, GIF out): frame 0 as per_frame's, then still.
    # One frame per forward in both modes: a batch of 4 and one of 1 differ by a level here
    # and there, which the GIF's palette and dithering turn into different pictures.
    clip = make_clip("gif", frames=1, width=64, height=48)
    source = _repeat_gif(clip, 5)
    decoded = {}
    for mode in ("per_frame", "flow"):
        out = io.BytesIO()
        stylize_clip(source, out, _OneAtATime(LocalStylizer(generator)), temporal=mode)
        decoded[mode] = clip_summary(out.getvalue())["pixels"]
    np.testing.assert_array_equal(decoded["flow"][0], decoded["per_frame"][0])
    for later in decoded["flow"][1:]:
        np.testing.assert_array_equal(later, decoded["flow"][0])


def test_moving_content_is_steadier_than_per_frame(generator: nn.Module) -> None:
    frames = [moving_frame(i, 64, 48) for i in range(6)]
    fresh = LocalStylizer(generator).stylize(frames, None)
    blender = FlowBlender(0.6)
    blended = [blender.blend(f, s) for f, s in zip(frames, fresh, strict=True)]

    def step(outs: list[np.ndarray]) -> float:
        return float(
            np.mean([np.abs(b.astype(int) - a).mean() for a, b in itertools.pairwise(outs)])
        )

    np.testing.assert_array_equal(blended[0], fresh[0])
    assert step(blended) < step(fresh)
    # Weight 0 is per_frame.
    zero = FlowBlender(0.0)
    for f, s in zip(frames, fresh, strict=True):
        np.testing.assert_array_equal(zero.blend(f, s), s)


@dataclass
class _OneAtATime:
    """A frame stylizer that runs each frame alone (the same numbers whatever the batch)."""

    inner: LocalStylizer

    def statistics(self, frames: Sequence[np.ndarray]) -> ClipStatistics:
        return self.inner.statistics(frames)

    def stylize(
        self, frames: Sequence[np.ndarray], stats: ClipStatistics | None
    ) -> list[np.ndarray]:
        return [self.inner.stylize([frame], stats)[0] for frame in frames]


def _repeat_gif(clip: bytes, frames: int) -> bytes:
    """A GIF of ``frames`` copies of ``clip``'s first frame (lossless: identical frames)."""
    import av

    with av.open(io.BytesIO(clip)) as source:
        first = next(source.decode(video=0)).to_ndarray(format="rgb24")
    out = io.BytesIO()
    with av.open(out, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "rgb8"
        for _ in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(first, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()
