"""Shared statistics: two passes equal the whole clip's forward with clip-wide norms."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stylenet.generators import build_generator
from stylenet.temporal import FrameSample, clip_statistics, fixed_statistics


@contextlib.contextmanager
def _clip_wide_norms(generator: nn.Module) -> Iterator[None]:
    """The reference: every instance norm takes its statistics over the whole batch.

    Batch norm in training mode without running statistics normalizes each channel over
    (N, H, W): with the clip's frames as the batch, that is the clip-wide instance norm.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)]

    def clip_norm(norm: nn.InstanceNorm2d, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)

    for norm in norms:
        norm.forward = clip_norm.__get__(norm)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for norm in norms:
            del norm.forward


def _moving_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """A gradient with a bright square sliding across it: content that moves."""
    y = torch.linspace(0, 255, height).view(height, 1).expand(height, width)
    clip = []
    for t in range(frames):
        frame = torch.stack([y, y.flip(0), torch.full_like(y, 60.0 + 20 * t)])
        left = 4 + 5 * t
        frame[:, 10:30, left : left + 20] = torch.tensor([250.0, 240.0, 30.0]).view(3, 1, 1)
        clip.append(frame)
    return torch.stack(clip)


def _trained_like(arch: str) -> nn.Module:
    torch.manual_seed(0)
    generator = build_generator(arch=arch, width=0.25, scales=3).eval()
    # Non-trivial affine parameters, so a mix-up of norms would show.
    for module in generator.modules():
        if isinstance(module, nn.InstanceNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.3, 0.3)
    return generator


@pytest.mark.parametrize("arch", ["residual", "multiscale"])
@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_shared_statistics_equal_the_whole_clip_forward(arch: str, storage: str) -> None:
    generator = _trained_like(arch)
    clip = _moving_clip(5, 48, 72)
    with torch.inference_mode():
        with _clip_wide_norms(generator):
            reference = generator(clip)
        stats = clip_statistics(generator, clip, tile=16, storage=storage)  # type: ignore[arg-type]
        # Pass 2 frame by frame and in pairs, as a stream is batched.
        with fixed_statistics(generator, stats):
            parts = [generator(clip[i : i + 2]) for i in range(0, 5, 2)]
        per_frame = generator(clip)
    shared = torch.cat(parts)
    assert stats.frames == 5
    assert (shared - reference).abs().max().item() < 0.01  # of a 0–255 level
    # ...and it is not today's per-frame forward (the test can fail).
    assert (per_frame - reference).abs().max().item() > 1.0


def test_fixed_statistics_puts_the_norms_back() -> None:
    generator = _trained_like("residual")
    clip = _moving_clip(2, 32, 32)
    with torch.inference_mode():
        before = generator(clip)
        stats = clip_statistics(generator, clip)
        with pytest.raises(RuntimeError), fixed_statistics(generator, stats):
            raise RuntimeError("a batch failed")
        after = generator(clip)
    assert torch.equal(before, after)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in generator.modules()) == len(stats.affine)


def test_frame_sample_keeps_a_short_clip_whole_and_spreads_over_a_long_one() -> None:
    short = FrameSample(8)
    for i in range(6):
        short.offer(i, np.full((1,), i))
    assert [int(f[0]) for f in short.frames()] == list(range(6))
    long = FrameSample(8)
    for i in range(100):
        long.offer(i, np.full((1,), i))
    kept = [int(f[0]) for f in long.frames()]
    assert len(kept) <= 8
    assert kept[0] == 0 and kept[-1] >= 80
    assert len({b - a for a, b in itertools.pairwise(kept)}) == 1  # evenly spaced
