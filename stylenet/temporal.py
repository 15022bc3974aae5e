"""Temporal modes for clips: how each frame's instance norms get their statistics.

Instance norm computed per frame (``per_frame``, what an image gets) makes colours and
textures jump between frames as the content moves: every frame is normalized by
statistics of its own. ``shared`` normalizes every frame of a clip alike, by statistics
taken once over frames of the clip, in two passes as the exact tiled inference does for
the bands of one large image (:func:`stylenet.tiled.shared_statistics`):

1. the sample frames (all of them, for a clip of at most ``stats_frames`` frames;
   otherwise that many spread evenly over the clip, :class:`FrameSample`) go through the
   network layer by layer, each norm taking its mean and variance over all their
   positions with the norms below already fixed;
2. every frame then runs the ordinary batched forward with each instance norm replaced
   by the affine those statistics make (:func:`fixed_statistics`), in any dtype.

For a clip no longer than the sample this is exactly the forward of the whole clip with
each norm's statistics over all its frames (tests/unit/test_temporal.py); for a longer
clip the statistics are those of the evenly spread sample.

``flow`` stylizes each frame as ``per_frame`` does, then blends it with the previous
output warped by the motion (decoder motion vectors or block matching), where the
warped previous input matches the current one (:mod:`stylenet.flow_blend`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from .errors import InvalidParams
from .norm_stats import norm_affine
from .tiled import Storage, shared_statistics

TemporalMode = Literal["per_frame", "shared", "flow"]
TEMPORAL_MODES: tuple[str, ...] = get_args(TemporalMode)
#: The default mode, by bench/flicker.py's warping error (docs/VIDEO.md): the previous
#: output warped by each clip's true motion against the current one. ``flow`` cut it by
#: 32–50 % against ``per_frame`` on all four clips at 192 px (18–41 % at 640 px), with the
#: style loss and the yardstick's r within the run's noise, and it beat an unwarped blend
#: (the control) on both the warping error and the distance to the single-frame output;
#: ``shared`` cut it by 1–17 % and washed the style out on the pans. Its block matching
#: runs on the CPU (~0.9 s a 720p frame on 2 cores): a GPU host may want ``per_frame``.
DEFAULT_TEMPORAL: TemporalMode = "flow"
#: Frames the shared statistics are taken over by default (spread over a longer clip).
DEFAULT_STATS_FRAMES = 8


def check_temporal(mode: str) -> TemporalMode:
    """Return ``mode`` if it is a temporal mode, else raise :class:`InvalidParams`."""
    if mode not in TEMPORAL_MODES:
        raise InvalidParams("temporal", f"must be one of {TEMPORAL_MODES}, got {mode!r}")
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class ClipStatistics:
    """Per-norm scale and shift shared by every frame of a clip (float32, on the device).

    Attributes:
        affine: ``{module name: (scale, shift)}`` for each instance norm of the generator
            they were measured on.
        frames: how many frames they were taken over.
    """

    affine: dict[str, tuple[torch.Tensor, torch.Tensor]]
    frames: int


def clip_statistics(
    generator: nn.Module,
    frames: torch.Tensor,
    *,
    tile: int = 512,
    storage: Storage = "auto",
) -> ClipStatistics:
    """Measure the shared statistics of ``frames`` (N×3×H×W, 0–255): pass 1 of ``shared``."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    try:
        found = shared_statistics(generator, frames, tile=tile, storage=storage)
    finally:
        generator.train(was_training)
    names = {module: name for name, module in generator.named_modules()}
    affine = {}
    for norm, (mean, var) in found.items():
        scale, shift = norm_affine(norm, mean, var)
        affine[names[norm]] = (
            scale.float().view(1, -1, 1, 1).to(device),
            shift.float().view(1, -1, 1, 1).to(device),
        )
    return ClipStatistics(affine, int(frames.shape[0]))


class _FixedNorm(nn.Module):
    """An instance norm's stand-in: a fixed per-channel affine (computed in float32)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 whatever autocast gives: as instance norm itself runs under CPU autocast.
        return torch.addcmul(self.shift, x.float(), self.scale)


@contextlib.contextmanager
def fixed_statistics(generator: nn.Module, stats: ClipStatistics | None) -> Iterator[nn.Module]:
    """Within the block, ``generator``'s instance norms use ``stats`` (pass 2 of ``shared``).

    Swaps the norm modules in place and puts them back however the block ends; the
    generator must not run elsewhere meanwhile (the service's device thread runs one
    batch at a time). ``stats=None`` leaves the generator as it is (``per_frame``).
    """
    if stats is None:
        yield generator
        return
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for name, (scale, shift) in stats.affine.items():
            parent_name, _, child = name.rpartition(".")
            parent = generator.get_submodule(parent_name)
            original = parent.get_submodule(child)
            if not isinstance(original, nn.InstanceNorm2d):
                raise InvalidParams("stats", f"{name} is not an instance norm of this generator")
            setattr(parent, child, _FixedNorm(scale, shift))
            swapped.append((parent, child, original))
        yield generator
    finally:
        for parent, child, original in reversed(swapped):
            setattr(parent, child, original)


class WithStatistics(nn.Module):
    """A generator whose instance norms use ``stats`` in every forward (``shared``'s pass 2).

    A module of its own, so code that runs generators (the service's batcher, the
    yardstick) runs this one unchanged; the swap lasts one forward (:func:`fixed_statistics`).
    """

    def __init__(self, generator: nn.Module, stats: ClipStatistics) -> None:
        """Wrap ``generator`` (its parameters stay its own)."""
        super().__init__()
        self.generator, self.stats = generator, stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the generator on ``x`` with the shared statistics."""
        with fixed_statistics(self.generator, self.stats):
            return self.generator(x)


class FrameSample:
    """At most ``limit`` frames spread evenly over a clip of unknown length, one pass.

    Keeps every ``stride``-th frame (stride 1 at first); when more than ``limit`` are
    kept the stride doubles and every other kept frame goes. A clip of at most
    ``limit`` frames is kept whole.
    """

    def __init__(self, limit: int) -> None:
        """Keep at most ``limit`` (≥ 1) frames."""
        if limit < 1:
            raise InvalidParams("stats_frames", f"must be at least 1, got {limit}")
        self.limit = limit
        self.stride = 1
        self.kept: list[tuple[int, np.ndarray]] = []

    def offer(self, index: int, frame: np.ndarray) -> None:
        """Consider frame number ``index`` (0, 1, 2, … in order)."""
        if index % self.stride:
            return
        self.kept.append((index, frame))
        while len(self.kept) > self.limit:
            self.stride *= 2
            self.kept = [(i, f) for i, f in self.kept if i % self.stride == 0]

    def frames(self) -> list[np.ndarray]:
        """Return the kept frames, in clip order."""
        return [frame for _, frame in self.kept]


__all__ = [
    "DEFAULT_STATS_FRAMES",
    "DEFAULT_TEMPORAL",
    "TEMPORAL_MODES",
    "ClipStatistics",
    "FrameSample",
    "TemporalMode",
    "WithStatistics",
    "check_temporal",
    "clip_statistics",
    "fixed_statistics",
]
