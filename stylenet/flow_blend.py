"""The ``flow`` temporal mode: each output blended with the previous output, warped.

A cheap post-process from the video style-transfer literature (the blending of
Bonneel et al. 2015, "Blind video temporal consistency", and of the warped previous
output in Ruder et al. 2016, without their optimization): every frame is stylized as an
image (``per_frame``), then

    out_t = fresh_t + α · c · (warp(out_{t-1}, flow_t) − fresh_t)

where ``flow_t`` says where each pixel of frame t was in frame t−1
(:mod:`stylenet.flow`), ``α`` is the blend weight (:data:`DEFAULT_FLOW_WEIGHT`) and
``c`` ∈ [0, 1] a per-pixel confidence: how well the previous *input* frame, warped by the
same flow, matches the current input (mean absolute difference, smoothed, between
:data:`MATCH_LEVELS` and :data:`MISMATCH_LEVELS` levels of 255), zero where the flow
points outside the previous frame. So disoccluded or mismatched regions, cuts and
changes of light take the fresh output, and static or well-tracked ones keep the
previous output's texture. The recursion carries the blended output forward.

Flow candidates per frame: the decoder's motion vectors where the frame has some
(scaled when the frames are resized) and block matching on luma everywhere; each pixel
takes the candidate whose warped previous input matches better. Only the previous
input and output frames are held.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidParams
from .flow import MotionVectors, block_flow, luma, motion_flow, warp

#: How much of the warped previous output a fully trusted pixel keeps (0: per_frame).
DEFAULT_FLOW_WEIGHT = 0.5
#: Mean absolute difference (levels of 255) of the warped previous input below which a
#: pixel is fully trusted, and above which it is not trusted at all.
MATCH_LEVELS, MISMATCH_LEVELS = 6.0, 20.0
#: Side of the box the matching error is averaged over before it becomes a confidence.
SMOOTH = 5


def check_flow_weight(weight: float) -> float:
    """Return ``weight`` if it is in [0, 1), else raise :class:`InvalidParams`."""
    if not 0.0 <= weight < 1.0:
        raise InvalidParams("flow_weight", f"must be in [0, 1), got {weight}")
    return float(weight)


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    """Return an H×W×3 uint8 frame as a 3×H×W float32 tensor (0–255)."""
    # A decoder's frame may be read-only (torch warns on wrapping one): copied then only.
    writable = np.require(frame, requirements=("C_CONTIGUOUS", "WRITEABLE"))
    return torch.from_numpy(writable).permute(2, 0, 1).float()


def _error(warped: torch.Tensor, current: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """Smoothed mean absolute difference (H×W); infinite where the warp left the frame."""
    diff = (warped - current).abs().mean(0, keepdim=True)
    diff = F.avg_pool2d(diff[None], SMOOTH, 1, SMOOTH // 2, count_include_pad=False)[0, 0]
    return diff.masked_fill(~inside, float("inf"))


class FlowBlender:
    """Blends each stylized frame with the previous output warped by the motion (streaming).

    Call :meth:`blend` once per frame, in order; it holds the previous input and output.
    """

    def __init__(self, weight: float = DEFAULT_FLOW_WEIGHT) -> None:
        """Blend with ``weight`` (α, in [0, 1)) of the warped previous output at most."""
        self.weight = check_flow_weight(weight)
        self._input: torch.Tensor | None = None
        self._output: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the previous frame (the next one is taken fresh)."""
        self._input = self._output = None

    def confidence(
        self, current: torch.Tensor, motion: MotionVectors | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the chosen backward flow (2×H×W) and its confidence (H×W, 0–1)."""
        previous = self._input
        assert previous is not None
        size = (current.shape[2], current.shape[1])
        flow = block_flow(luma(previous), luma(current))
        warped, inside = warp(previous, flow)
        error = _error(warped, current, inside)
        if motion is not None:
            vectors, known = motion_flow(motion, size)
            warped_mv, inside_mv = warp(previous, vectors)
            error_mv = _error(warped_mv, current, inside_mv & known)
            better = error_mv < error
            flow = torch.where(better, vectors, flow)
            error = torch.where(better, error_mv, error)
        span = MISMATCH_LEVELS - MATCH_LEVELS
        confidence = ((MISMATCH_LEVELS - error) / span).clamp(0.0, 1.0)
        return flow, confidence

    def blend(
        self, frame: np.ndarray, stylized: np.ndarray, motion: MotionVectors | None = None
    ) -> np.ndarray:
        """Return frame ``stylized`` (the output for input ``frame``) blended; both H×W×3 uint8."""
        current, fresh = _to_tensor(frame), _to_tensor(stylized)
        if self.weight == 0.0 or self._output is None or self._output.shape != fresh.shape:
            out = fresh
        else:
            flow, confidence = self.confidence(current, motion)
            previous, _ = warp(self._output, flow)
            out = fresh + (self.weight * confidence) * (previous - fresh)
        self._input, self._output = current, out
        pixels = out.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0)
        return pixels.contiguous().numpy()


__all__ = ["DEFAULT_FLOW_WEIGHT", "FlowBlender", "check_flow_weight"]
