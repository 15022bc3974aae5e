"""GIF output on a palette made from the clip, against FFmpeg's fixed rgb8 cube."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import torch
from torch import nn

from stylenet.generators import build_generator
from stylenet.gif_palette import PALETTE_FRAMES, ClipPalette
from stylenet.video import LocalStylizer, stylize_clip
from tests.clip_testing import clip_summary

#: Colours far from the rgb8 cube's levels (R, G: multiples of 36.4; B: of 85).
COLOURS = np.array(
    [[200, 30, 90], [17, 140, 222], [250, 250, 240], [5, 60, 20], [130, 90, 10], [90, 20, 130]],
    np.uint8,
)


def _frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """Frames of a few flat colours: stripes that move 8 px a frame (16-px aligned blocks)."""
    frames = []
    for index in range(count):
        columns = (np.arange(width) // 16 + index) % len(COLOURS)
        rows = (np.arange(height) // 16)[:, None]
        frames.append(COLOURS[(columns[None, :] + rows) % len(COLOURS)])
    return frames


def _rgb8_gif(frames: list[np.ndarray]) -> bytes:
    """The same frames as FFmpeg's GIF encoder writes them on its fixed rgb8 palette."""
    out = io.BytesIO()
    with av.open(out, "w", format="gif") as container:
        stream = container.add_stream("gif", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "rgb8"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()


def _mp4(frames: list[np.ndarray]) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = (
            frames[0].shape[1],
            frames[0].shape[0],
            "yuv420p",
        )
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()


def _error(made: list[np.ndarray], given: list[np.ndarray]) -> float:
    pairs = zip(made, given, strict=True)
    return float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in pairs]))


def test_a_clip_palette_keeps_a_few_colours_exactly() -> None:
    frames = _frames(3)
    palette = ClipPalette(frames)
    assert sorted(map(tuple, palette.colours)) == sorted(map(tuple, COLOURS))
    for frame in frames:
        np.testing.assert_array_equal(palette.colours[palette.indices(frame)], frame)


@pytest.fixture(scope="module")
def generator() -> nn.Module:
    torch.manual_seed(0)
    return build_generator(arch="residual", width=0.25).eval()


def test_gif_output_reproduces_a_few_colours_far_better_than_rgb8(generator: nn.Module) -> None:
    # More frames than the palette's sample: later frames are mapped to it too.
    frames = _frames(PALETTE_FRAMES + 3)
    source = _mp4(frames)
    decoded = clip_summary(source)["pixels"]  # what the stylizer sees (H.264's colours)
    out = io.BytesIO()
    # strength 0: the output is the input, so the GIF's own loss is what is measured.
    result = stylize_clip(source, out, LocalStylizer(generator, strength=0.0), output="gif")
    assert result.frames == len(frames)
    made = clip_summary(out.getvalue())["pixels"]
    ours = _error(made, decoded)
    rgb8 = _error(clip_summary(_rgb8_gif(decoded))["pixels"], decoded)
    assert rgb8 > 8, rgb8  # the fixed cube misses these colours by far
    assert ours < 1.5 and ours < rgb8 / 5, (ours, rgb8)
