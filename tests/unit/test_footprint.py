"""stylenet.footprint: a forward's live tensor bytes per pixel, traced on the meta device."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stylenet.footprint import _LiveBytes, forward_bytes_per_pixel, forward_flops_per_pixel
from stylenet.generators import GeneratorConfig, build_generator


def test_the_meta_trace_equals_a_real_forward_at_another_size() -> None:
    config = GeneratorConfig(width=0.25)
    model = build_generator(config).eval()
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        image = torch.full((1, 3, 96, 128), 128.0)
        model(image)
    # Everything in the forward scales with the pixels: the 64² trace holds at 96×128.
    assert forward_bytes_per_pixel(config) == pytest.approx(mode.peak / (96 * 128), rel=0.03)


def test_the_figure_follows_the_network() -> None:
    full = forward_bytes_per_pixel(GeneratorConfig(width=1.0))
    half = forward_bytes_per_pixel(GeneratorConfig(width=0.5))
    # A width-1 net holds 64 float32 channels upsampled and padded at full size (512 B/px).
    assert full > 2 * 64 * 4
    assert half == pytest.approx(full / 2, rel=0.05)
    assert forward_bytes_per_pixel(GeneratorConfig(arch="multiscale")) > 0
    # bfloat16 activations are half the bytes; the float32 input batch stays.
    bf16 = forward_bytes_per_pixel(GeneratorConfig(width=1.0), torch.bfloat16)
    assert bf16 == pytest.approx(full / 2, rel=0.05)


def test_the_arithmetic_per_pixel_follows_the_network() -> None:
    config = GeneratorConfig(width=0.25)
    model = build_generator(config).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.full((1, 3, 96, 128), 128.0))
    # Traced at 64², it holds at 96×128 on real tensors.
    per_pixel = forward_flops_per_pixel(config)
    assert per_pixel == pytest.approx(counter.get_total_flops() / (96 * 128), rel=0.03)
    # Convolutions' work goes with the square of the width.
    full = forward_flops_per_pixel(GeneratorConfig(width=1.0))
    half = forward_flops_per_pixel(GeneratorConfig(width=0.5))
    assert 0.2 < half / full < 0.35
    assert forward_flops_per_pixel(GeneratorConfig(arch="multiscale")) > 0
