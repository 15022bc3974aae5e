"""bench/warp_error.py: the warping error under the true motion of a camera move (#29)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    """Import bench/warp_error.py (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("warp_error", REPO / "bench" / "warp_error.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("warp_error", module)
    spec.loader.exec_module(module)
    return module


we = _load()
SIZE = (12, 8)  # width, height


def _photo(width: int = 40, height: int = 20) -> torch.Tensor:
    """A 3×H×W texture with detail at every scale (0–255)."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, height, width, generator=generator) * 255


def _crop(photo: torch.Tensor, left: int, top: int) -> torch.Tensor:
    """A whole-pixel crop of ``SIZE``: the frame a box at (left, top) of scale 1 makes."""
    return photo[:, top : top + SIZE[1], left : left + SIZE[0]]


def _pan(photo: torch.Tensor, frames: int, step: int) -> tuple[list, list]:
    """Frames of a whole-pixel pan and the true flows from their boxes."""
    boxes = [
        (float(i * step), 2.0, float(i * step + SIZE[0]), 2.0 + SIZE[1]) for i in range(frames)
    ]
    clip = [_crop(photo, int(box[0]), 2) for box in boxes]
    flows = [we.box_flow(a, b, SIZE) for a, b in itertools.pairwise(boxes)]
    return clip, flows


def test_a_translation_warped_by_its_true_motion_has_no_error() -> None:
    clip, flows = _pan(_photo(), frames=4, step=3)
    assert torch.allclose(flows[0][0], torch.full((SIZE[1], SIZE[0]), 3.0))
    assert torch.allclose(flows[0][1], torch.zeros(SIZE[1], SIZE[0]))
    assert we.clip_warping_error(clip, flows) == pytest.approx(0.0, abs=1e-4)
    # The last 3 columns came into view: they are not valid, the rest are.
    mask = we.valid(flows[0])
    assert not mask[:, -3:].any() and mask[:, :-3].all()


def test_a_subpixel_move_of_a_linear_ramp_has_no_error() -> None:
    """Bilinear resampling is exact on a linear picture: a fractional shift costs nothing."""
    size = (10, 6)
    xs = torch.arange(size[0], dtype=torch.float32)
    ys = torch.arange(size[1], dtype=torch.float32).view(-1, 1)

    def frame(left: float) -> torch.Tensor:
        return (7.0 * (xs + left) + 3.0 * ys).expand(3, -1, -1)

    flow = we.box_flow((0.0, 0.0, 10.0, 6.0), (0.4, 0.0, 10.4, 6.0), size)
    assert torch.allclose(flow[0], torch.full(size[::-1], 0.4))
    assert we.warping_error(frame(0.0), frame(0.4), flow) == pytest.approx(0.0, abs=1e-3)


def test_a_zoom_flow_scales_about_the_centre() -> None:
    size = (8, 8)
    flow = we.box_flow((0.0, 0.0, 16.0, 16.0), (4.0, 4.0, 12.0, 12.0), size)
    x = torch.arange(size[0], dtype=torch.float32)
    # Centre of pixel x now is photo 4 + (x + 0.5); before it was at index (that) / 2 - 0.5.
    assert torch.allclose(flow[0, 0], (4 + x + 0.5) / 2 - 0.5 - x)
    assert we.valid(flow).all()  # zooming in: every pixel was in the previous frame


def test_ghosting_raises_the_warping_error_though_the_old_flicker_falls() -> None:
    """A blend with the previous output left in place: less step, more warping error."""
    clip, flows = _pan(_photo(), frames=5, step=2)
    frames = [frame.round().to(torch.uint8).permute(1, 2, 0).numpy() for frame in clip]
    ghosts = we.ghosted(frames, 0.5)
    assert (ghosts[0] == frames[0]).all()  # the first frame has nothing to blend with

    def step(frames: list) -> float:
        pairs = itertools.pairwise(frames)
        return float(np.mean([np.abs(b.astype(float) - a).mean() for a, b in pairs]))

    assert step(ghosts) < step(frames)  # the consecutive-frame flicker rewards the ghost
    assert we.clip_warping_error(frames, flows) == pytest.approx(0.0, abs=1e-4)
    assert we.clip_warping_error(ghosts, flows) > 10.0  # levels of 255; noise is ~85 apart
    assert we.mean_distance(ghosts, frames) > 10.0
    assert we.mean_distance(frames, frames) == 0.0


def test_mismatched_lengths_are_refused() -> None:
    clip, flows = _pan(_photo(), frames=3, step=1)
    with pytest.raises(ValueError):
        we.clip_warping_error(clip, flows[:1])
    with pytest.raises(ValueError):
        we.mean_distance(clip, clip[:2])


def test_camera_boxes_pan_keeps_the_scale_and_zoom_keeps_the_centre() -> None:
    pan = we.camera_boxes((400, 300), "pan", 5, (160, 90))
    widths = {round(b[2] - b[0], 6) for b in pan}
    assert len(widths) == 1 and pan[0][0] == 0.0 and pan[-1][2] == pytest.approx(400.0)
    zoom = we.camera_boxes((400, 300), "zoom", 5, (160, 90))
    centres = {(round((b[0] + b[2]) / 2, 6), round((b[1] + b[3]) / 2, 6)) for b in zoom}
    assert centres == {(200.0, 150.0)}
    first, last = zoom[0][2] - zoom[0][0], zoom[-1][2] - zoom[-1][0]
    assert first / last == pytest.approx(1.6)
