"""Feed-forward generator networks, with instance or batch normalization.

Two architectures from the paper (Ulyanov, Vedaldi, Lempitsky 2016, §3):

* ``residual`` — Johnson et al.'s image transformation network: 9×9 conv, two
  stride-2 convs, five residual blocks, two ×2 nearest-upsample + conv stages, 9×9
  conv back to RGB. Upsampling + convolution (not transposed convolution) avoids
  checkerboard artifacts; reflection padding avoids border artifacts.
* ``multiscale`` — Ulyanov et al.'s texture-network generator (texture_nets'
  "pyramid"): the input at several scales made by average pooling, each processed by
  3×3, 3×3, 1×1 conv blocks, joined coarse to fine by nearest upsampling and channel
  concatenation, then a 1×1 conv to RGB.

``norm="instance"`` normalizes every image by its own statistics in training *and* in
evaluation (no running statistics are ever kept): this is the paper's contribution,
and it makes the output invariant to the content image's contrast. ``norm="batch"``
is the baseline of the paper's ablation.

Both take and return images in the pixel convention of :mod:`stylenet.pixels`
(RGB, 0–255, NCHW) and preserve the input's exact height and width, odd sizes included.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidParams

Architecture = Literal["residual", "multiscale"]
Norm = Literal["instance", "batch"]
ARCHITECTURES: tuple[str, ...] = ("residual", "multiscale")
NORMS: tuple[str, ...] = ("instance", "batch")
MIN_SIDE = 16
"""Smallest image side the generators accept (the 9×9 reflection padding needs > 4 px
after downsampling, and instance statistics need more than one pixel per channel)."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator's structure.

    Attributes:
        arch: ``"residual"`` or ``"multiscale"``.
        width: channel multiplier (0.5 gives Johnson's light 16/32/64 network).
        norm: ``"instance"`` (default, the paper's) or ``"batch"`` (ablation baseline).
        scales: number of pyramid levels of the multiscale generator (ignored by residual).
    """

    arch: str = "residual"
    width: float = 1.0
    norm: str = "instance"
    scales: int = 5

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise InvalidParams("arch", f"must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.norm not in NORMS:
            raise InvalidParams("norm", f"must be one of {NORMS}, got {self.norm!r}")
        if not 0.125 <= float(self.width) <= 4.0:
            raise InvalidParams("width", f"must be within 0.125..4, got {self.width}")
        if not 1 <= int(self.scales) <= 8:
            raise InvalidParams("scales", f"must be within 1..8, got {self.scales}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        # track_running_stats=False: per-image statistics in train AND eval mode.
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    return nn.BatchNorm2d(channels)


def _channels(base: int, width: float) -> int:
    return max(4, round(base * width))


class ConvLayer(nn.Sequential):
    """Reflection padding followed by a convolution (same size for stride 1)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class ResidualBlock(nn.Module):
    """Two 3×3 conv + norm layers with an identity shortcut (He et al. 2016)."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
            ConvLayer(channels, channels, 3),
            _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.body(x)


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    # A bounded output in [0, 255] that starts at mid-grey: like Johnson's scaled tanh,
    # it lets a fresh generator produce sensible images after a few iterations.
    return 127.5 * (1.0 + torch.tanh(x))


class ResidualGenerator(nn.Module):
    """Johnson et al.'s residual image transformation network."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = (_channels(c, config.width) for c in (32, 64, 128))
        norm = config.norm
        self.down = nn.ModuleList(
            [
                nn.Sequential(ConvLayer(3, c1, 9), _norm(norm, c1), nn.ReLU(inplace=True)),
                nn.Sequential(ConvLayer(c1, c2, 3, 2), _norm(norm, c2), nn.ReLU(inplace=True)),
                nn.Sequential(ConvLayer(c2, c3, 3, 2), _norm(norm, c3), nn.ReLU(inplace=True)),
            ]
        )
        self.res = nn.Sequential(*(ResidualBlock(c3, norm) for _ in range(5)))
        self.up = nn.ModuleList(
            [
                nn.Sequential(ConvLayer(c3, c2, 3), _norm(norm, c2), nn.ReLU(inplace=True)),
                nn.Sequential(ConvLayer(c2, c1, 3), _norm(norm, c1), nn.ReLU(inplace=True)),
            ]
        )
        self.out = ConvLayer(c1, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``x`` (N×3×H×W, 0–255) into an image of the same size."""
        sizes = []
        for layer in self.down:
            sizes.append(x.shape[-2:])
            x = layer(x)
        x = self.res(x)
        # Upsample to the exact size seen on the way down: odd sizes round-trip exactly.
        for layer, size in zip(self.up, reversed(sizes[1:]), strict=True):
            x = layer(F.interpolate(x, size=size, mode="nearest"))
        return _to_pixels(self.out(x))


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, norm: str) -> None:
        super().__init__(
            ConvLayer(cin, cout, kernel), _norm(norm, cout), nn.LeakyReLU(0.01, inplace=True)
        )


def _branch(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        _ConvBlock(cin, cout, 3, norm),
        _ConvBlock(cout, cout, 3, norm),
        _ConvBlock(cout, cout, 1, norm),
    )


class MultiscaleGenerator(nn.Module):
    """Ulyanov et al.'s multi-scale texture network (texture_nets' pyramid generator)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = _channels(8, config.width)
        norm = config.norm
        self.ratios = [2**k for k in reversed(range(config.scales))]  # coarse → fine
        self.branches = nn.ModuleList(_branch(3, c, norm) for _ in self.ratios)
        # Before each join, both inputs are normalized (texture_nets normalizes the
        # concatenation); the joined stack then grows by c channels per level.
        self.join_norms = nn.ModuleList()
        self.joins = nn.ModuleList()
        for level in range(1, config.scales):
            coarse, fine = c * level, c
            self.join_norms.append(nn.ModuleList([_norm(norm, coarse), _norm(norm, fine)]))
            self.joins.append(_branch(coarse + fine, coarse + fine, norm))
        self.out = nn.Conv2d(c * config.scales, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``x`` (N×3×H×W, 0–255) into an image of the same size."""
        height, width = x.shape[-2:]
        current: torch.Tensor | None = None
        for index, (ratio, branch) in enumerate(zip(self.ratios, self.branches, strict=True)):
            # At least 2×2 per level: instance statistics of one pixel are undefined.
            size = (max(2, math.ceil(height / ratio)), max(2, math.ceil(width / ratio)))
            level = branch(x if ratio == 1 else F.adaptive_avg_pool2d(x, size))
            if current is None:
                current = level
                continue
            norm_coarse, norm_fine = self.join_norms[index - 1]
            upsampled = F.interpolate(current, size=level.shape[-2:], mode="nearest")
            joined = torch.cat([norm_coarse(upsampled), norm_fine(level)], dim=1)
            current = self.joins[index - 1](joined)
        assert current is not None
        return _to_pixels(self.out(current))


def build_generator(config: GeneratorConfig | None = None, **kwargs: Any) -> nn.Module:
    """Build a freshly initialized generator.

    Args:
        config: the structure; or pass its fields as keyword arguments.
        **kwargs: fields of :class:`GeneratorConfig` when ``config`` is None.

    Returns:
        A ``ResidualGenerator`` or ``MultiscaleGenerator`` with a ``config`` attribute.
    """
    config = config or GeneratorConfig(**kwargs)
    if config.arch == "residual":
        return ResidualGenerator(config)
    return MultiscaleGenerator(config)
