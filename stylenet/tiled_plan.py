"""The bands a tiled forward will compute, counted before it runs (for its progress).

:class:`_Plan` walks the network as :mod:`stylenet.tiled` does, with the runner's
sweeps replaced by counting them: nothing is read, stored or computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .norm_stats import Stats
from .tiled import _Affine, _Image, _Runner, _Source, _Stored


class _Shape:
    """A source's shape alone: what :class:`_Plan` passes on instead of its values."""

    def __init__(self, source: _Source) -> None:
        self.channels, self.height, self.width = source.channels, source.height, source.width

    def read(self, lo: int, hi: int) -> torch.Tensor:
        raise AssertionError("a planned run reads nothing")


class _Plan(_Runner):
    """Counts the bands a run's sweeps will compute, computing none."""

    def __init__(self, run: _Runner) -> None:
        super().__init__(run.device, run.tile, run.disk, run.frames)
        self.bands = 0

    def sweep(self, source: _Source) -> None:
        self.bands += math.ceil(source.height / self.step(source))

    def store(self, source: _Source) -> tuple[_Stored, Stats]:
        self.sweep(source)
        return _Shape(source), Stats()  # type: ignore[return-value]

    def normalize(
        self,
        source: _Source,
        norm: nn.Module,
        act: Callable[[torch.Tensor], torch.Tensor] | None,
        stats: Stats | None = None,
    ) -> _Affine:
        if stats is None and isinstance(norm, nn.InstanceNorm2d):
            self.sweep(source)
        return _Shape(source)  # type: ignore[return-value]


def count_bands(
    walk: Callable[[Any, _Image, _Runner], _Source],
    generator: nn.Module,
    image: _Image,
    run: _Runner,
) -> int:
    """Bands ``walk(generator, image, run)`` and the output sweep after it will compute."""
    plan = _Plan(run)
    last = walk(generator, image, plan)
    return plan.bands + math.ceil(last.height / plan.step(last))
