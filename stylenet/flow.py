"""Motion between consecutive frames: decoder motion vectors, block matching, warping.

The ``flow`` temporal mode (:mod:`stylenet.flow_blend`) needs, for every pixel of the
current frame, where it was in the previous one: a *backward* flow, 2×H×W in pixels
(``x_prev = x + flow[0]``, ``y_prev = y + flow[1]``). Two sources, both cheap:

* the decoder's motion vectors (:class:`MotionVectors`: FFmpeg's ``export_mvs``, read by
  :class:`stylenet.video_read.ClipReader`), made dense by :func:`motion_flow`; only the
  vectors that point into the past are kept, and they may point further back than the
  previous frame (H.264 allows several reference frames and does not say which);
* a classical estimate (:func:`block_flow`): block matching on downscaled luma, coarse to
  fine, for frames without vectors (GIF, WebP, intra frames) and as a second candidate.

:func:`warp` resamples an image by a flow (bilinear) and says which pixels came from
inside the previous frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Coarse level of the block matching: its longer side, in pixels.
COARSE_SIDE = 64
#: Each finer level of the block matching is this many times larger...
LEVEL_RATIO = 4
#: ...up to this longer side (finer costs more than the warp gains; vectors refine it).
FINE_SIDE = 384
#: Search radius (in the level's pixels) at the coarse level, then at each finer one.
COARSE_RADIUS, FINE_RADIUS = 4, 2
#: Side of the blocks matched, in the level's pixels.
BLOCK = 6
#: Cost added per pixel of displacement (in levels of 255): flat areas keep zero motion.
MOTION_PENALTY = 0.25


@dataclass(frozen=True)
class MotionVectors:
    """One decoded frame's motion vectors into past frames, in the coded frame's pixels.

    Attributes:
        x, y: block centres in the current frame (float32 arrays, one per vector).
        w, h: block sizes.
        dx, dy: where the block's content was in the reference frame, relative to
            ``(x, y)`` (sub-pixel: FFmpeg's ``motion_x / motion_scale``).
        width, height: the coded frame's size (the vectors' coordinates).
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    width: int
    height: int

    @classmethod
    def from_side_data(cls, vectors: np.ndarray, width: int, height: int) -> MotionVectors | None:
        """Keep the past-pointing vectors of FFmpeg's ``AVMotionVector`` records (None if none)."""
        past = vectors[vectors["source"] < 0]
        if past.size == 0:
            return None
        scale = np.maximum(past["motion_scale"].astype(np.float32), 1.0)
        return cls(
            x=past["dst_x"].astype(np.float32),
            y=past["dst_y"].astype(np.float32),
            w=past["w"].astype(np.float32),
            h=past["h"].astype(np.float32),
            dx=past["motion_x"].astype(np.float32) / scale,
            dy=past["motion_y"].astype(np.float32) / scale,
            width=width,
            height=height,
        )


def motion_flow(vectors: MotionVectors, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense backward flow (2×H×W) at ``size`` (W, H) from ``vectors``, and where it is known.

    Each vector's block (scaled from the coded frame to ``size``, as the frames are)
    gets its displacement; pixels no vector covers (intra blocks, blocks predicted from
    the future only) are ``False`` in the returned H×W mask and 0 in the flow.
    """
    width, height = size
    sx, sy = width / vectors.width, height / vectors.height
    flow = np.zeros((2, height, width), np.float32)
    known = np.zeros((height, width), bool)
    x0 = np.clip(np.floor((vectors.x - vectors.w / 2) * sx), 0, width).astype(int)
    x1 = np.clip(np.ceil((vectors.x + vectors.w / 2) * sx), 0, width).astype(int)
    y0 = np.clip(np.floor((vectors.y - vectors.h / 2) * sy), 0, height).astype(int)
    y1 = np.clip(np.ceil((vectors.y + vectors.h / 2) * sy), 0, height).astype(int)
    for i in range(vectors.x.size):
        flow[0, y0[i] : y1[i], x0[i] : x1[i]] = vectors.dx[i] * sx
        flow[1, y0[i] : y1[i], x0[i] : x1[i]] = vectors.dy[i] * sy
        known[y0[i] : y1[i], x0[i] : x1[i]] = True
    return torch.from_numpy(flow), torch.from_numpy(known)


def luma(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (1×H×W) of a 3×H×W RGB image (0–255)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device)
    return (image * weights.view(3, 1, 1)).sum(0, keepdim=True)


def warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``image`` (C×H×W) at ``x + flow`` (bilinear); and where that fell inside it.

    Returns the warped C×H×W image (edges repeated outside) and an H×W bool mask of the
    pixels whose source lies within the image.
    """
    _, height, width = image.shape
    ys = torch.arange(height, dtype=flow.dtype, device=flow.device).view(-1, 1)
    xs = torch.arange(width, dtype=flow.dtype, device=flow.device).view(1, -1)
    x, y = xs + flow[0], ys + flow[1]
    inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    out = F.grid_sample(
        image[None].float(), grid[None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0], inside


def _match(
    previous: torch.Tensor, current: torch.Tensor, radius: int, base: torch.Tensor
) -> torch.Tensor:
    """Refine the per-block whole-pixel flow ``base`` by the best shift within ``radius``.

    ``current`` is cut into :data:`BLOCK`² blocks (``base`` is bh×bw, one vector per
    block); each block is compared with ``previous`` at its own ``base`` plus each shift
    (edges repeated), one shift at a time, keeping the best so far.
    """
    _, height, width = current.shape
    pixels = base.repeat_interleave(BLOCK, 1).repeat_interleave(BLOCK, 2)[:, :height, :width]
    ys = torch.arange(height, device=current.device).view(-1, 1)
    xs = torch.arange(width, device=current.device).view(1, -1)
    base_x, base_y = xs + pixels[0].long(), ys + pixels[1].long()
    best_cost = torch.full(base.shape[1:], float("inf"), device=current.device)
    best = torch.zeros(base.shape[1:], dtype=torch.long, device=current.device)
    shifts = [(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    for index, (dx, dy) in enumerate(shifts):
        x = (base_x + dx).clamp_(0, width - 1)
        y = (base_y + dy).clamp_(0, height - 1)
        diff = (previous[:, y, x] - current).abs()[None]
        cost = F.avg_pool2d(diff, BLOCK, BLOCK, ceil_mode=True)[0, 0]
        cost += MOTION_PENALTY * (abs(dx) + abs(dy))
        better = cost < best_cost
        best_cost = torch.where(better, cost, best_cost)
        best.masked_fill_(better, index)
    table = torch.tensor(shifts, dtype=base.dtype, device=current.device)  # K×2
    return base + table[best].permute(2, 0, 1)


def block_flow(previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Backward flow (2×H×W) from ``current`` to ``previous`` (1×H×W luma) by block matching.

    Coarse to fine, over :data:`BLOCK`² blocks: at a level whose longer side is
    :data:`COARSE_SIDE` pixels, each block is matched within :data:`COARSE_RADIUS`;
    each finer level (:data:`LEVEL_RATIO` times larger, up to a longer side of
    :data:`FINE_SIDE`) refines its parent block's vector (scaled up) within
    :data:`FINE_RADIUS`. The block vectors are then interpolated (bilinear) to every
    pixel: whole pixels of the finest level (1 px up to 384 px wide, 5 px at 1280), a
    smooth estimate, checked where it is used.
    """
    _, height, width = current.shape
    longer = max(height, width)
    factor = max(1, math.ceil(longer / COARSE_SIDE))
    finest = max(1, math.ceil(longer / FINE_SIDE))
    flow: torch.Tensor | None = None
    level_size = (height, width)
    while True:
        size = (max(1, round(height / factor)), max(1, round(width / factor)))
        blocks = (math.ceil(size[0] / BLOCK), math.ceil(size[1] / BLOCK))
        prev_level = F.interpolate(previous[None], size=size, mode="area")[0]
        cur_level = F.interpolate(current[None], size=size, mode="area")[0]
        if flow is None:
            flow = _match(prev_level, cur_level, COARSE_RADIUS, torch.zeros(2, *blocks))
        else:
            parent = _upsample(flow, blocks, level_size, size, mode="nearest").round()
            flow = _match(prev_level, cur_level, FINE_RADIUS, parent)
        level_size = size
        if factor < 2 * finest:
            return _upsample(flow, (height, width), level_size, (height, width))
        factor = max(finest, factor // LEVEL_RATIO)


def _upsample(
    flow: torch.Tensor,
    grid: tuple[int, int],
    old: tuple[int, int],
    new: tuple[int, int],
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resize a flow field to a ``grid`` (H, W) for images going from ``old`` to ``new`` size."""
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    out = F.interpolate(flow[None], size=grid, mode=mode, **kwargs)[0]
    scale = torch.tensor([new[1] / old[1], new[0] / old[0]], dtype=flow.dtype)
    return out * scale.view(2, 1, 1).to(flow.device)


__all__ = ["MotionVectors", "block_flow", "luma", "motion_flow", "warp"]
