"""What an inference forward holds in memory: bytes of live tensors per image pixel.

A feed-forward generator's activations scale with the image: a width-1 residual net
keeps 64 channels of float32 at full resolution while it upsamples (the upsampled map
and its padded copy), so one 2048×1536 forward holds ~2.2 GB of tensors at its peak
(and ~3 GB of process memory on a CPU, allocator slack included). Admission
(``service.runtime.budget``) needs that figure before it runs the forward.

It is traced, not tabled: the generator is built on the ``meta`` device (shapes only, no
memory, no arithmetic) and run once under a dispatch mode that adds up the bytes of the
tensors each operation creates and takes them off when Python lets go of them; the peak
over the forward, divided by the pixels, is the figure. Everything in the forward
scales with the pixels, so the figure holds at any size: 732 B/px traced at 64² for a
width-1 net, 717 at 1024×768 on a real CPU run of the same trace; in bfloat16, half.

The same trace gives a forward's arithmetic (:func:`forward_flops_per_pixel`, counted by
:class:`~torch.utils.flop_counter.FlopCounterMode`): what the service's time-aware
admission multiplies by a device's measured seconds per FLOP to price a request.

Exact tiled inference (:mod:`stylenet.tiled`, the service's large-image lane) holds
other things: the float input and output images, the stored activations (in memory up to
:data:`~stylenet.tiled.AUTO_MEMORY_PIXELS`, on disk above) and one band's tensors.
:func:`tiled_footprint` traces a small real tiled forward twice (activations in memory,
then on disk) with the same counter and splits the peaks into those parts.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from .generators import GeneratorConfig, build_generator
from .tiled import AUTO_MEMORY_PIXELS, forward_tiled

#: The side of the traced forward: small (a trace takes milliseconds), every size scales.
TRACE_SIDE = 64


class _LiveBytes(TorchDispatchMode):
    """Counts the storage bytes of the tensors created under it that are still referenced."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage._cdata  # one storage, however many views (in-place ops, ReLU)
            if key in self._sizes:
                continue
            self._sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._release, key)
        return out

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


@functools.lru_cache(maxsize=64)
def forward_bytes_per_pixel(config: GeneratorConfig, dtype: torch.dtype = torch.float32) -> float:
    """Peak bytes of live tensors per pixel of one image in a forward of ``config``.

    ``dtype``: the compute dtype (:func:`stylenet.inference.inference_dtype`); bfloat16
    halves the activations (traced as a bfloat16 network: 378 B/px for a width-1 net,
    against 381 for the float32 network under CPU autocast, which serving runs). The
    float32 input batch is counted; the weights are not (they are resident anyway).
    Multiply by ``height × width × batch`` for a forward's peak.
    """
    with torch.device("meta"):
        generator = build_generator(config).eval().to(dtype)
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        image = torch.empty(1, 3, TRACE_SIDE, TRACE_SIDE, device="meta")
        generator(image.to(dtype))
        del image
    return mode.peak / (TRACE_SIDE * TRACE_SIDE)


@functools.lru_cache(maxsize=64)
def forward_flops_per_pixel(config: GeneratorConfig) -> float:
    """Floating-point operations per pixel of one image in a forward of ``config``.

    Counted on the ``meta`` device (convolutions and matrix products, as
    :class:`~torch.utils.flop_counter.FlopCounterMode` counts them); like the bytes, it
    scales with the pixels, so multiply by ``height × width`` for a forward's FLOPs. It
    compares networks (a width-0.5 net does about a quarter of a width-1 net's work),
    not devices: seconds come from a device's measured rate.
    """
    with torch.device("meta"):
        generator = build_generator(config).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        generator(torch.empty(1, 3, TRACE_SIDE, TRACE_SIDE, device="meta"))
    return counter.get_total_flops() / (TRACE_SIDE * TRACE_SIDE)


#: The tiled trace: a real forward (tiling needs values for its statistics), small.
TILED_TRACE_SIDE, TILED_TRACE_TILE = 64, 32
#: Float32 input and output images of the tiled forward, per pixel.
TILED_IMAGE_BYTES = 2 * 3 * 4
#: A band's bytes grow faster than its ``tile²`` positions on wide images (halo rows at
#: every layer): 10-40 % under at 256² with tile 64 against the 64²/32 trace.
BAND_SLACK = 1.5


@dataclass(frozen=True)
class TiledFootprint:
    """Host bytes of a tiled forward (:func:`stylenet.tiled.forward_tiled`) by part.

    Attributes:
        stored_per_pixel: stored activations per image pixel, when kept in memory.
        band_per_position: one band's live tensors per ``tile²`` position.
    """

    stored_per_pixel: float
    band_per_position: float

    def bytes(self, height: int, width: int, tile: int) -> int:
        """Peak host bytes of a tiled forward of ``height × width`` with ``tile`` (storage auto)."""
        pixels = height * width
        stored = self.stored_per_pixel if pixels <= AUTO_MEMORY_PIXELS else 0.0
        band = self.band_per_position * tile * tile * BAND_SLACK
        return int(pixels * (TILED_IMAGE_BYTES + stored) + band)


def _tiled_peak(model: torch.nn.Module, storage: str) -> int:
    side = TILED_TRACE_SIDE
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        image = torch.full((1, 3, side, side), 128.0)
        forward_tiled(model, image, tile=TILED_TRACE_TILE, storage=storage)  # type: ignore[arg-type]
        del image
    return mode.peak


@functools.lru_cache(maxsize=64)
def tiled_footprint(config: GeneratorConfig) -> TiledFootprint:
    """Trace a tiled forward of ``config`` (float32, CPU; seconds on a loaded CPU, cached).

    The disk trace holds the images and a band; the memory trace adds the stored
    activations: the difference, per pixel, is their figure.
    """
    model = build_generator(config).eval()
    in_memory, on_disk = _tiled_peak(model, "memory"), _tiled_peak(model, "disk")
    pixels = TILED_TRACE_SIDE * TILED_TRACE_SIDE
    band = max(0.0, on_disk - pixels * TILED_IMAGE_BYTES) / (TILED_TRACE_TILE * TILED_TRACE_TILE)
    return TiledFootprint(max(0.0, in_memory - on_disk) / pixels, band)


__all__ = [
    "TRACE_SIDE",
    "TiledFootprint",
    "forward_bytes_per_pixel",
    "forward_flops_per_pixel",
    "tiled_footprint",
]
