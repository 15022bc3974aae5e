"""Exact tiled inference: any image size in memory bounded by the tile, no seams.

Instance normalization needs, at each norm layer, every channel's mean and variance over
the **whole** image at that layer. Tiling that normalizes each tile by its own
statistics shifts colours from tile to tile (the seams of naive tiling); statistics from
a thumbnail (URST's "thumbnail instance normalization") are approximate. Here the
network runs layer by layer over horizontal bands of the image (full width, ``tile²``
output positions a band), and every norm layer uses the statistics of the whole image:

* each convolution's output is either **stored** (host memory, or an unlinked temporary
  file for images too large for memory) while its per-channel means and variances are
  accumulated, or, on disk, **recomputed** band by band where its consumer reads it (the
  full-resolution 32-channel layers at both ends of the residual generator: writing one
  costs 128 bytes a pixel, recomputing it about a quarter of the forward);
* a norm layer becomes a per-channel scale and shift (from those statistics) applied,
  with the activation, when the next layer reads its input;
* a band reads the rows it needs from the layer below with the same reflection at the
  image border as :class:`torch.nn.ReflectionPad2d`, so borders behave as in the
  whole-image forward; nearest upsampling and adaptive average pooling use the row and
  column indices torch itself computes.

The result equals the whole-image forward up to float rounding (the tests hold it to
1/255), for both generators of :mod:`stylenet.generators` and any size. Memory is
bounded by the band (the tile) and the input and output images; computation is the
whole-image forward plus the recomputed layers and a few halo rows per band.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidParams
from .generators import MIN_SIDE, MultiscaleGenerator, ResidualGenerator, _to_pixels
from .norm_stats import NormStatistics, Stats, norm_affine

Storage = Literal["auto", "memory", "disk"]
STORAGES: tuple[str, ...] = ("auto", "memory", "disk")
#: Smallest tile side: the generators' widest halo is 4 px a side (the 9×9 convolutions).
MIN_TILE = MIN_SIDE
#: ``storage="auto"`` keeps activations in memory up to this many image pixels (2048²:
#: about 1.3 GB above the images for the residual generator), on disk above, where the
#: process stays near 1 GB whatever the size (bench/bench_tiled.py).
AUTO_MEMORY_PIXELS = 2048 * 2048


class _Source(Protocol):
    """A whole-image activation (N×C×H×W) whose rows can be read band by band."""

    channels: int
    height: int
    width: int

    def read(self, lo: int, hi: int) -> torch.Tensor:
        """Rows ``lo:hi`` as an N×C×(hi−lo)×W float32 tensor on the compute device."""
        ...


def _gather(source: _Source, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` (any order, repeats allowed) of ``source``: one contiguous read."""
    lo, hi = int(rows.min()), int(rows.max()) + 1
    band = source.read(lo, hi)
    if rows.numel() == hi - lo and bool((rows == torch.arange(lo, hi)).all()):
        return band
    return band.index_select(2, (rows - lo).to(band.device))


def _nearest(source_size: int, size: int) -> torch.Tensor:
    """Return the source index of each output index of nearest interpolation (torch's)."""
    probe = torch.arange(source_size, dtype=torch.float32).view(1, 1, source_size, 1)
    return F.interpolate(probe, size=(size, 1), mode="nearest").view(-1).long()


class _Image:
    """The input image (or the frames of a clip, N×3×H×W), in memory."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image = image
        self.channels, self.height, self.width = image.shape[1:]

    def read(self, lo: int, hi: int) -> torch.Tensor:
        return self.image[:, :, lo:hi]


class _Stored:
    """A materialized activation: host memory, or an unlinked temporary file (H×N×C×W rows)."""

    def __init__(
        self, channels: int, height: int, width: int, device: torch.device, disk: bool, frames: int
    ):
        self.channels, self.height, self.width = channels, height, width
        self.device, self.frames = device, frames
        self._row_bytes = frames * channels * width * 4
        # Unlinked at once: nothing is left behind, even if the process is killed.
        self._file = tempfile.TemporaryFile(prefix="stylize-tiled-") if disk else None  # noqa: SIM115
        self._memory = None if disk else torch.empty((frames, channels, height, width))

    def write(self, lo: int, band: torch.Tensor) -> None:
        band = band.detach().float().cpu()
        if self._memory is not None:
            self._memory[:, :, lo : lo + band.shape[2]] = band
            return
        assert self._file is not None
        data = band.permute(2, 0, 1, 3).contiguous().numpy().tobytes()
        os.pwrite(self._file.fileno(), data, lo * self._row_bytes)

    def read(self, lo: int, hi: int) -> torch.Tensor:
        if self._memory is not None:
            return self._memory[:, :, lo:hi].to(self.device)
        assert self._file is not None
        size, chunks = (hi - lo) * self._row_bytes, []
        offset = lo * self._row_bytes
        while size:  # pread may return less than asked
            chunk = os.pread(self._file.fileno(), size, offset)
            if not chunk:
                raise OSError("tiled inference: short read from the scratch file")
            chunks.append(chunk)
            size, offset = size - len(chunk), offset + len(chunk)
        rows = np.frombuffer(b"".join(chunks), dtype=np.float32)
        rows = torch.from_numpy(rows.copy()).view(hi - lo, self.frames, self.channels, self.width)
        return rows.permute(1, 2, 0, 3).to(self.device)


class _Affine:
    """A per-channel scale and shift, then an activation, applied as the rows are read."""

    def __init__(
        self,
        source: _Source,
        scale: torch.Tensor,
        shift: torch.Tensor,
        act: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> None:
        self.source, self.act = source, act
        self.scale, self.shift = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)
        self.channels, self.height, self.width = source.channels, source.height, source.width

    def read(self, lo: int, hi: int) -> torch.Tensor:
        x = torch.addcmul(self.shift, self.source.read(lo, hi), self.scale)
        return self.act(x) if self.act is not None else x


class _Conv:
    """A reflection-padded convolution over a source, computed for the rows asked for."""

    def __init__(self, source: _Source, conv: nn.Conv2d, pad: int) -> None:
        self.source, self.conv, self.pad = source, conv, pad
        (self.kernel, _), (self.stride, _) = conv.kernel_size, conv.stride
        self.channels = conv.out_channels
        self.height = (source.height + 2 * pad - self.kernel) // self.stride + 1
        self.width = (source.width + 2 * pad - self.kernel) // self.stride + 1

    def read(self, lo: int, hi: int) -> torch.Tensor:
        first = self.stride * lo - self.pad  # rows of the padded input this band needs
        last = self.stride * (hi - 1) - self.pad + self.kernel
        height = self.source.height
        x = self.source.read(max(first, 0), min(last, height))
        # Rows outside the image exist only in the bands at its top and bottom, where the
        # band starts (ends) at the image's edge: reflecting the band's rows there is
        # reflecting the image's, as ReflectionPad2d does; one pad for rows and columns.
        top, bottom = max(0, -first), max(0, last - height)
        if self.pad or top or bottom:
            x = F.pad(x, (self.pad, self.pad, top, bottom), mode="reflect")
        return F.conv2d(x, self.conv.weight, self.conv.bias, stride=self.stride)


class _Upsampled:
    """Nearest upsampling of a source to ``size``, rows and columns as torch maps them."""

    def __init__(self, source: _Source, size: tuple[int, int]) -> None:
        self.source = source
        self.channels, (self.height, self.width) = source.channels, size
        self._rows = _nearest(source.height, self.height)

    def read(self, lo: int, hi: int) -> torch.Tensor:
        x = _gather(self.source, self._rows[lo:hi])
        # Columns by torch itself: the height is unchanged (an identity map), the width
        # maps as in the whole-image forward, as the band spans the whole width.
        return F.interpolate(x, size=(x.shape[2], self.width), mode="nearest")


class _Concat:
    """Sources stacked along channels."""

    def __init__(self, *parts: _Source) -> None:
        self.parts = parts
        self.channels = sum(p.channels for p in parts)
        self.height, self.width = parts[0].height, parts[0].width

    def read(self, lo: int, hi: int) -> torch.Tensor:
        return torch.cat([p.read(lo, hi) for p in self.parts], dim=1)


class _Sum:
    """The elementwise sum of two sources (a residual connection)."""

    def __init__(self, a: _Source, b: _Source) -> None:
        self.a, self.b = a, b
        self.channels, self.height, self.width = a.channels, a.height, a.width

    def read(self, lo: int, hi: int) -> torch.Tensor:
        return self.a.read(lo, hi) + self.b.read(lo, hi)


class _Runner:
    """Sweeps sources band by band: statistics, storage, output.

    ``frames`` images go through together (a clip's frames): each instance norm then
    uses the statistics of all of them, which ``record`` (when given) keeps.
    """

    def __init__(
        self,
        device: torch.device,
        tile: int,
        disk: bool,
        frames: int = 1,
        record: NormStatistics | None = None,
    ) -> None:
        self.device, self.tile, self.disk = device, tile, disk
        self.frames, self.record = frames, record

    on_band: Callable[[], None] | None = None  # after each band; what it raises stops the run

    def step(self, source: _Source) -> int:
        """Rows a band of ``source`` has: about ``tile²`` positions over all frames."""
        return max(1, self.tile * self.tile // (source.width * self.frames))

    def stats(
        self, source: _Source, sink: Callable[[int, torch.Tensor], None] | None = None
    ) -> Stats:
        """Sweep ``source`` band by band for its statistics, handing each band to ``sink``."""
        stats, step = Stats(), self.step(source)
        for lo in range(0, source.height, step):
            band = source.read(lo, min(lo + step, source.height))
            stats.add(band)
            if sink is not None:
                sink(lo, band)
            if self.on_band is not None:
                self.on_band()
        return stats

    def store(self, source: _Source) -> tuple[_Stored, Stats]:
        """Materialize ``source``, with its statistics from the same sweep."""
        stored = _Stored(
            source.channels, source.height, source.width, self.device, self.disk, self.frames
        )
        return stored, self.stats(source, stored.write)

    def normalize(
        self,
        source: _Source,
        norm: nn.Module,
        act: Callable[[torch.Tensor], torch.Tensor] | None,
        stats: Stats | None = None,
    ) -> _Affine:
        """``act(norm(source))`` as a read-time affine; instance norm over the whole image.

        With several frames, over all of them; ``record`` keeps what instance norms used.
        """
        if isinstance(norm, nn.InstanceNorm2d):
            mean, var = (stats or self.stats(source)).mean_var()
            if self.record is not None:
                self.record[norm] = (mean, var)
        elif isinstance(norm, nn.BatchNorm2d) and norm.running_mean is not None:
            mean, var = norm.running_mean.double(), norm.running_var.double()
        else:
            raise InvalidParams("generator", f"tiling does not support {type(norm).__name__}")
        scale, shift = norm_affine(norm, mean, var)
        return _Affine(source, scale.float().to(self.device), shift.float().to(self.device), act)


def _conv_of(layer: nn.Module) -> tuple[nn.Conv2d, int]:
    """Return the convolution and padding of a ``ConvLayer`` (reflection pad + conv)."""
    if isinstance(layer, nn.Conv2d):
        return layer, 0
    pad, conv = layer[0], layer[1]
    assert isinstance(pad, nn.ReflectionPad2d)
    assert isinstance(conv, nn.Conv2d)
    return conv, int(pad.padding[0])


def _relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu_(x)


def _leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu_(x, 0.01)


def _residual(net: ResidualGenerator, image: _Source, run: _Runner) -> _Source:
    x: _Source = image
    sizes = []
    for index, layer in enumerate(net.down):
        sizes.append((x.height, x.width))
        conv = _Conv(x, *_conv_of(layer[0]))
        if index == 0 and run.disk:  # full resolution: recomputed, not written to disk
            x = run.normalize(conv, layer[1], _relu)
        else:
            stored, stats = run.store(conv)
            x = run.normalize(stored, layer[1], _relu, stats)
    for block in net.res:
        conv1, norm1, _, conv2, norm2 = block.body
        stored, stats = run.store(_Conv(x, *_conv_of(conv1)))
        hidden = run.normalize(stored, norm1, _relu, stats)
        stored, stats = run.store(_Conv(hidden, *_conv_of(conv2)))
        x, _ = run.store(_Sum(x, run.normalize(stored, norm2, None, stats)))
    for index, (layer, size) in enumerate(zip(net.up, reversed(sizes[1:]), strict=True)):
        conv = _Conv(_Upsampled(x, size), *_conv_of(layer[0]))
        if index == len(net.up) - 1 and run.disk:  # full resolution again: recomputed
            x = run.normalize(conv, layer[1], _relu)
        else:
            stored, stats = run.store(conv)
            x = run.normalize(stored, layer[1], _relu, stats)
    return _Conv(x, *_conv_of(net.out))


def _branch(branch: nn.Sequential, x: _Source, run: _Runner) -> _Source:
    for block in branch:
        stored, stats = run.store(_Conv(x, *_conv_of(block[0])))
        x = run.normalize(stored, block[1], _leaky, stats)
    return x


def _multiscale(net: MultiscaleGenerator, image: _Image, run: _Runner) -> _Source:
    height, width = image.height, image.width
    current: _Source | None = None
    for index, (ratio, branch) in enumerate(zip(net.ratios, net.branches, strict=True)):
        size = (max(2, math.ceil(height / ratio)), max(2, math.ceil(width / ratio)))
        # The pooled inputs are at most a quarter of the image: pooled whole, like torch.
        source = image if ratio == 1 else _Image(F.adaptive_avg_pool2d(image.image, size))
        level = _branch(branch, source, run)
        if current is None:
            current = level
            continue
        norm_coarse, norm_fine = net.join_norms[index - 1]
        upsampled = _Upsampled(current, (level.height, level.width))
        joined = _Concat(
            run.normalize(upsampled, norm_coarse, None), run.normalize(level, norm_fine, None)
        )
        current = _branch(net.joins[index - 1], joined, run)
    assert current is not None
    return _Conv(current, net.out, 0)


def check_tile(tile: int) -> int:
    """Return ``tile`` if it is a usable tile side, else raise :class:`InvalidParams`."""
    if tile < MIN_TILE:
        raise InvalidParams(
            "tile",
            f"must be at least {MIN_TILE} px (the generators' widest halo is 4 px a side), "
            f"got {tile}",
        )
    return tile


def _check_images(images: torch.Tensor, what: str) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise InvalidParams(what, f"expected N×3×H×W, got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if min(height, width) < MIN_SIDE:
        raise InvalidParams(what, f"both sides must be ≥ {MIN_SIDE} px, got {height}×{width}")


def _build(
    generator: nn.Module,
    images: torch.Tensor,
    tile: int,
    storage: Storage,
    record: NormStatistics | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[_Source, _Runner]:
    """Sweep every layer below the output (all norm statistics are known on return).

    ``progress``: as :func:`forward_tiled`'s (set up here, before the first band).
    """
    check_tile(tile)
    if storage not in STORAGES:
        raise InvalidParams("storage", f"must be one of {STORAGES}, got {storage!r}")
    frames, (height, width) = images.shape[0], images.shape[-2:]
    device = next(generator.parameters()).device
    pixels = frames * height * width
    disk = storage == "disk" or (storage == "auto" and pixels > AUTO_MEMORY_PIXELS)
    run = _Runner(device, tile, disk, frames, record)
    source = _Image(images.to(device).float())
    if isinstance(generator, ResidualGenerator):
        walk: Callable[[Any, _Image, _Runner], _Source] = _residual
    elif isinstance(generator, MultiscaleGenerator):
        walk = _multiscale
    else:
        raise InvalidParams("generator", f"tiling does not support {type(generator).__name__}")
    if progress is not None:
        from .tiled_plan import count_bands  # it builds on _Runner

        total, done = count_bands(walk, generator, source, run), 0

        def on_band() -> None:
            nonlocal done
            done += 1
            progress(done, total)

        run.on_band = on_band
    return walk(generator, source, run), run


@torch.inference_mode()
def forward_tiled(
    generator: nn.Module,
    image: torch.Tensor,
    *,
    tile: int = 512,
    storage: Storage = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run the generator on one image band by band, with whole-image statistics.

    Args:
        generator: a residual or multiscale generator (instance or batch norm).
        image: a 1×3×H×W image in the pixel convention (0–255).
        tile: band size: each band holds about ``tile²`` positions of a layer's output.
        storage: where stored activations live: ``memory``, ``disk`` (an unlinked
            temporary file in ``$TMPDIR``), or ``auto`` (disk above
            :data:`AUTO_MEMORY_PIXELS`).
        progress: called as ``progress(done, total)`` after each band computed (every
            sweep's and the output's; ``total`` counted beforehand); an exception it
            raises stops the run between two bands (how a service gives up a request).

    Returns:
        The generator's output (1×3×H×W, 0–255, float32) on the generator's device,
        equal to ``generator(image)`` up to float rounding.
    """
    _check_images(image, "image")
    if image.shape[0] != 1:
        raise InvalidParams("image", f"expected 1×3×H×W, got {tuple(image.shape)}")
    last, run = _build(generator, image, tile, storage, progress=progress)
    height, width = image.shape[-2:]
    out = torch.empty((1, 3, height, width), device=run.device)
    step = run.step(last)
    for lo in range(0, height, step):
        hi = min(lo + step, height)
        out[:, :, lo:hi] = _to_pixels(last.read(lo, hi))
        if run.on_band is not None:
            run.on_band()
    return out


@torch.inference_mode()
def shared_statistics(
    generator: nn.Module,
    frames: torch.Tensor,
    *,
    tile: int = 512,
    storage: Storage = "auto",
) -> NormStatistics:
    """Each instance norm's statistics over all ``frames`` together (a clip's, or a sample's).

    The first of the two passes of :func:`forward_tiled`, over N frames at once: layer by
    layer, every norm's per-channel mean and variance are taken over the N frames'
    positions (as if the frames were one image), with the statistics of the norms below
    already applied. Normalizing each frame by these (:mod:`stylenet.temporal`) gives the
    frames exactly the forward of the whole clip with shared statistics. Memory is
    bounded by ``tile`` as in :func:`forward_tiled` (``auto`` storage: disk above
    :data:`AUTO_MEMORY_PIXELS` summed over the frames).

    Args:
        generator: a residual or multiscale generator.
        frames: N×3×H×W in the pixel convention (0–255), all one size.
        tile: band size, as :func:`forward_tiled`'s.
        storage: as :func:`forward_tiled`'s.

    Returns:
        ``{norm module: (mean, var)}`` (float64, population variance) for every
        :class:`torch.nn.InstanceNorm2d` of ``generator``.
    """
    _check_images(frames, "frames")
    record: NormStatistics = {}
    _build(generator, frames, tile, storage, record)
    return record


__all__ = [
    "AUTO_MEMORY_PIXELS",
    "MIN_TILE",
    "STORAGES",
    "NormStatistics",
    "check_tile",
    "forward_tiled",
    "norm_affine",
    "shared_statistics",
]
