"""Instance-norm statistics gathered in pieces: the shared part of tiled and clip inference.

:class:`Stats` accumulates a per-channel mean and variance from bands of an activation
(rows of an image, frames of a clip) as if it had seen the whole at once;
:func:`norm_affine` turns statistics into the per-channel scale and shift a norm layer
then is. :mod:`stylenet.tiled` uses both for whole-image statistics over bands,
:mod:`stylenet.temporal` for statistics shared by the frames of a clip.
"""

from __future__ import annotations

import torch
from torch import nn

#: Each instance norm's per-channel (mean, variance), float64, as the tiled runner found them.
NormStatistics = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]


class Stats:
    """Per-channel count, mean and variance of an activation, accumulated band by band.

    Sums of values and of squares are taken around a per-channel centre (the first
    band's mean), so the variance does not cancel when the mean is large against the
    spread; each band sums in float32 (a band is at most ``tile²`` positions), the bands
    add up in float64. Twice as fast as a per-band :func:`torch.var_mean` here.
    """

    def __init__(self) -> None:
        self.count = 0
        self.centre: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None

    def add(self, band: torch.Tensor) -> None:
        """Count a band (N×C×h×W): every position of every frame in it."""
        if self.centre is None:
            self.centre = band.mean(dim=(0, 2, 3), keepdim=True)
        centred = band - self.centre
        total = centred.sum(dim=(0, 2, 3)).double()
        squares = centred.square_().sum(dim=(0, 2, 3)).double()
        self.sum = total if self.sum is None else self.sum + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += band.shape[0] * band.shape[2] * band.shape[3]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and population variance (float64) of what was added."""
        assert self.centre is not None
        assert self.sum is not None
        assert self.squares is not None
        mean = self.sum / self.count
        var = (self.squares / self.count - mean.square()).clamp_min(0)
        return mean + self.centre.view(-1).double(), var


def norm_affine(
    norm: nn.Module, mean: torch.Tensor, var: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the per-channel (scale, shift) that normalizes by ``mean``/``var`` (float64).

    ``norm(x) == x * scale + shift`` for a norm layer whose statistics are ``mean`` and
    ``var``; ``weight``/``bias`` default to 1/0 for a norm without affine parameters.
    """
    channels = mean.numel()
    weight = norm.weight if norm.weight is not None else torch.ones(channels)
    bias = norm.bias if norm.bias is not None else torch.zeros(channels)
    scale = weight.detach().double().cpu() / torch.sqrt(var.double().cpu() + norm.eps)
    shift = bias.detach().double().cpu() - mean.double().cpu() * scale
    return scale, shift
