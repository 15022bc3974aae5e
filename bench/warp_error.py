"""Warping error of a clip under its true motion, and the distance to a reference (issue 29).

The flicker of ``bench/flicker.py`` (mean absolute difference of consecutive output
frames, minus the input's) rewards any blending with the previous frame, ghosts
included. The measure of the video-consistency literature (Lai et al. 2018, "Learning
Blind Video Temporal Consistency") is the **warping error**: warp the previous output
by the true motion to the current frame and take the mean absolute difference to the
current output over the pixels where that motion is valid (here: not leaving the
frame; a camera move over a still photo occludes nothing). A ghost (the previous frame
left where it was, not where the motion took it) raises it; a picture that moves with
the content lowers it. Beside it, :func:`mean_distance` to the single-frame
stylization of the same frames says how far a temporal mode moved the picture from
what the generator makes of each frame alone (stability against fidelity).

The bench's clips are crops of one photo (:func:`camera_boxes`), so the true motion
between two frames is exact (:func:`box_flow`): each output pixel's centre maps to a
point of the photo through its frame's box, and that point back into the other frame.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from stylenet.flow import warp

#: A crop of the photo, ``(left, top, right, bottom)`` in its pixels (PIL's ``box``).
Box = tuple[float, float, float, float]


def camera_boxes(
    photo_size: tuple[int, int], kind: str, frames: int, size: tuple[int, int]
) -> list[Box]:
    """The crops of a camera move over a photo: ``pan`` left to right, or ``zoom`` in 1.6×.

    ``photo_size`` and ``size`` (the frames') are ``(width, height)``.
    """
    width, height = photo_size
    aspect = size[0] / size[1]
    boxes = []
    for t in np.linspace(0.0, 1.0, frames):
        if kind == "pan":
            h = height * 0.8
            w = min(width * 0.7, h * aspect)
            h = w / aspect
            left, top = (width - w) * t, (height - h) / 2
        else:
            scale = 1.0 / (1.0 + 0.6 * t)
            h = min(height, width / aspect) * scale
            w = h * aspect
            left, top = (width - w) / 2, (height - h) / 2
        boxes.append((float(left), float(top), float(left + w), float(top + h)))
    return boxes


def box_flow(previous: Box, current: Box, size: tuple[int, int]) -> torch.Tensor:
    """The true backward flow (2×H×W) from the frame cropped at ``current`` to ``previous``.

    Pixel ``(x, y)`` of the current frame (``size`` = ``(width, height)``) has its centre
    at ``left + (x + 0.5)·w/W`` in the photo (PIL's resampling convention); the flow is
    where that point lies in the previous frame, minus ``(x, y)``, as
    :func:`stylenet.flow.warp` takes it.
    """
    width, height = size
    axes = []
    for axis, count in ((0, width), (1, height)):
        index = torch.arange(count, dtype=torch.float64)
        step_now = (current[axis + 2] - current[axis]) / count
        step_before = (previous[axis + 2] - previous[axis]) / count
        point = current[axis] + (index + 0.5) * step_now
        axes.append((point - previous[axis]) / step_before - 0.5 - index)
    dx = axes[0].view(1, -1).expand(height, width)
    dy = axes[1].view(-1, 1).expand(height, width)
    return torch.stack((dx, dy)).float()


def valid(flow: torch.Tensor) -> torch.Tensor:
    """Pixels (H×W bool) whose source under ``flow`` lies among the previous frame's centres.

    Stricter than :func:`stylenet.flow.warp`'s ``inside``: bilinear sampling there reads
    only pixels of the frame (no repeated edge).
    """
    _, height, width = flow.shape
    xs = torch.arange(width, dtype=flow.dtype).view(1, -1) + flow[0]
    ys = torch.arange(height, dtype=flow.dtype).view(-1, 1) + flow[1]
    eps = 1e-4
    return (xs >= -eps) & (xs <= width - 1 + eps) & (ys >= -eps) & (ys <= height - 1 + eps)


def _tensor(frame: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An H×W×3 array or a 3×H×W tensor as a float 3×H×W tensor (0–255)."""
    if isinstance(frame, torch.Tensor):
        return frame.float()
    return torch.from_numpy(np.array(frame, dtype=np.float32)).permute(2, 0, 1)


def warping_error(
    previous: np.ndarray | torch.Tensor, current: np.ndarray | torch.Tensor, flow: torch.Tensor
) -> float:
    """Mean absolute difference of ``current`` and ``previous`` warped by ``flow`` (:func:`valid`).

    Frames are H×W×3 arrays or 3×H×W tensors (levels of 255); ``flow`` is the backward
    flow of :func:`box_flow`. NaN when no pixel is valid.
    """
    warped, _ = warp(_tensor(previous), flow)
    mask = valid(flow)
    if not bool(mask.any()):
        return float("nan")
    diff = (warped - _tensor(current)).abs().mean(0)
    return float(diff[mask].mean())


def clip_warping_error(
    frames: list[np.ndarray] | list[torch.Tensor], flows: list[torch.Tensor]
) -> float:
    """Mean :func:`warping_error` over consecutive pairs; ``flows[i]`` takes frame i+1 to i."""
    pairs = list(itertools.pairwise(frames))
    if len(pairs) != len(flows):
        raise ValueError(f"{len(frames)} frames need {len(frames) - 1} flows, got {len(flows)}")
    return float(np.mean([warping_error(a, b, f) for (a, b), f in zip(pairs, flows, strict=True)]))


def ghosted(frames: list[np.ndarray], weight: float = 0.5) -> list[np.ndarray]:
    """A control, no product mode: each frame blended with the previous result *unwarped*.

    ``out_t = (1 − weight)·frame_t + weight·out_{t−1}``: what the consecutive-frame
    flicker rewards and the warping error must not (a ghost of the last frame left where
    it was). H×W×3 uint8 frames in and out.
    """
    out: list[np.ndarray] = []
    previous: np.ndarray | None = None
    for frame in frames:
        now = frame.astype(np.float32)
        if previous is not None:
            now = (1.0 - weight) * now + weight * previous
        previous = now
        out.append(np.clip(np.rint(now), 0, 255).astype(np.uint8))
    return out


def mean_distance(
    frames: list[np.ndarray] | list[torch.Tensor],
    reference: list[np.ndarray] | list[torch.Tensor],
) -> float:
    """Mean absolute difference (levels of 255) of each frame and its reference frame."""
    if len(frames) != len(reference):
        raise ValueError(f"{len(frames)} frames against {len(reference)} references")
    diffs = [(_tensor(a) - _tensor(b)).abs().mean() for a, b in zip(frames, reference, strict=True)]
    return float(torch.stack(diffs).mean())


__all__ = [
    "Box",
    "box_flow",
    "camera_boxes",
    "clip_warping_error",
    "ghosted",
    "mean_distance",
    "valid",
    "warping_error",
]
