"""Apply a trained generator: resizing, strength blending and colour preservation.

:func:`stylize_tensor` is the batched core used by the service's batcher; :func:`stylize`
wraps it for one PIL image. On CUDA inference runs under bf16 autocast; on CPU in
float32 unless asked for bf16 (:func:`inference_dtype`: worth it on CPUs with bf16
instructions, 1.5× faster for a mean change of 0.4–0.6 of 255 on the demo styles).
Inputs stay in the contiguous (NCHW) layout: on an H100, channels_last made these
instance-normalized generators 10–40 % slower (bench/bench_stylenet.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import nn

from .errors import ImageError, InvalidParams
from .generators import MIN_SIDE
from .pixels import image_to_tensor, resize_within, rgb_to_ycbcr, tensor_to_image, ycbcr_to_rgb
from .tiled import check_tile, forward_tiled

#: ``tile="auto"`` tiles images larger than this many pixels (2048² = 4.2 Mpx: above it
#: the whole-image forward of the default generator needs several GB of activations).
AUTO_TILE_PIXELS = 2048 * 2048
#: The tile side ``tile="auto"`` uses.
AUTO_TILE = 512

CPU_DTYPES = ("auto", "float32", "bfloat16")


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16).

    Without them oneDNN emulates bf16 and autocast makes convolutions slower, not
    faster. Reads ``/proc/cpuinfo`` (Linux); elsewhere answers False.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return re.search(r"^flags\s*:.*\b(avx512_bf16|amx_bf16)\b", cpuinfo, re.MULTILINE) is not None


def inference_dtype(device: torch.device, cpu: str = "float32") -> torch.dtype:
    """Return the compute dtype for generators on ``device``.

    CUDA: bfloat16 (autocast). CPU: ``cpu`` is ``float32``, ``bfloat16``, or ``auto``
    (bfloat16 where :func:`cpu_has_native_bf16`, else float32).
    """
    if cpu not in CPU_DTYPES:
        raise InvalidParams("cpu_dtype", f"must be one of {CPU_DTYPES}, got {cpu!r}")
    if device.type == "cuda":
        return torch.bfloat16
    if cpu == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return torch.bfloat16 if cpu == "bfloat16" else torch.float32


def blend(
    content: torch.Tensor, stylized: torch.Tensor, strength: float, preserve_color: bool
) -> torch.Tensor:
    """Mix a stylized batch with its content batch (pixel convention, same shape).

    ``preserve_color`` keeps the content's chrominance and takes only the stylized
    luminance (Gatys et al. 2016, "Preserving color in neural artistic style transfer",
    luminance-only transfer); ``strength`` then blends linearly with the content.
    """
    if not 0.0 <= strength <= 1.0:
        raise InvalidParams("strength", f"must be within 0..1, got {strength}")
    stylized = stylized.float()
    if preserve_color:
        styl, cont = rgb_to_ycbcr(stylized), rgb_to_ycbcr(content.float())
        stylized = ycbcr_to_rgb(torch.cat([styl[:, :1], cont[:, 1:]], dim=1))
    if strength < 1.0:
        stylized = torch.lerp(content.float(), stylized, strength)
    return stylized.clamp(0, 255)


@torch.inference_mode()
def stylize_tensor(
    batch: torch.Tensor,
    generator: nn.Module,
    *,
    strength: float = 1.0,
    preserve_color: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Stylize an N×3×H×W batch (pixel convention) on the generator's device.

    ``dtype`` is the compute dtype (autocast when not float32); default
    :func:`inference_dtype` of the device (bf16 on CUDA, float32 on CPU).
    Returns a float32 batch of the same shape on that device, clamped to 0–255.
    """
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise InvalidParams("batch", f"expected N×3×H×W, got {tuple(batch.shape)}")
    if min(batch.shape[-2:]) < MIN_SIDE:
        raise ImageError(f"image is {tuple(batch.shape[-2:])}; both sides must be ≥ {MIN_SIDE} px")
    device = _device_of(generator)
    batch = batch.to(device, non_blocking=True)
    dtype = inference_dtype(device) if dtype is None else dtype
    autocast: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if dtype != torch.float32:
        autocast = torch.autocast(device.type, dtype=dtype)
    was_training = generator.training
    generator.eval()
    try:
        with autocast:
            out = generator(batch)
    finally:
        generator.train(was_training)
    return blend(batch, out, strength, preserve_color)


def tile_for(height: int, width: int, tile: int | Literal["auto"] | None) -> int | None:
    """Return the tile side to use for an image (``None``: the whole image at once).

    ``tile`` is a side in pixels, ``None`` (never tile) or ``"auto"`` (:data:`AUTO_TILE`
    above :data:`AUTO_TILE_PIXELS`).
    """
    if tile == "auto":
        return AUTO_TILE if height * width > AUTO_TILE_PIXELS else None
    return None if tile is None else check_tile(int(tile))


@torch.inference_mode()
def stylize_tiled(
    image: torch.Tensor,
    generator: nn.Module,
    *,
    tile: int = AUTO_TILE,
    strength: float = 1.0,
    preserve_color: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Stylize one 1×3×H×W image in bands with exact whole-image instance statistics.

    The same result as :func:`stylize_tensor` in float32 (:mod:`stylenet.tiled`), in
    memory bounded by ``tile`` instead of the image size; runs in float32.
    ``progress(done, total)`` is called after each band (see :func:`forward_tiled`).
    """
    image = image.to(_device_of(generator))
    was_training = generator.training
    generator.eval()
    try:
        out = forward_tiled(generator, image, tile=tile, progress=progress)
    finally:
        generator.train(was_training)
    return blend(image, out, strength, preserve_color)


def stylize(
    image: Image.Image,
    generator: nn.Module,
    *,
    max_side: int | None = 1024,
    strength: float = 1.0,
    preserve_color: bool = False,
    dtype: torch.dtype | None = None,
    tile: int | Literal["auto"] | None = "auto",
) -> Image.Image:
    """Stylize one image; the result has the (possibly downscaled) input's size.

    Args:
        image: any PIL image (EXIF orientation and alpha are handled).
        generator: a trained generator (see :func:`stylenet.model_file.load_generator`).
        max_side: downscale so the longer side is at most this (None keeps the size).
        strength: 0 returns the content, 1 the full stylization.
        preserve_color: keep the content's colours, transfer luminance only.
        dtype: compute dtype (see :func:`stylize_tensor`); tiled runs use float32.
        tile: tile side in pixels for exact tiled inference (:func:`stylize_tiled`),
            ``None`` for the whole image at once, ``"auto"`` to tile large images only.
    """
    tensor = image_to_tensor(resize_within(image, max_side))
    side = tile_for(tensor.shape[-2], tensor.shape[-1], tile)
    if side is not None:
        out = stylize_tiled(
            tensor, generator, tile=side, strength=strength, preserve_color=preserve_color
        )
    else:
        out = stylize_tensor(
            tensor, generator, strength=strength, preserve_color=preserve_color, dtype=dtype
        )
    return tensor_to_image(out)
