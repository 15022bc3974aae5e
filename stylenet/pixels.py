"""The one pixel convention of stylize, and conversions to and from it.

**Convention**: images are ``torch.float32`` tensors, RGB, values in ``[0, 255]``,
layout NCHW (a single image may be CHW). Generators take and return this convention;
the loss network converts to its own preprocessing internally (see :mod:`stylenet.vgg`).
Training, inference, the worker and the service all use these helpers, so nothing
else decides how pixels are scaled.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

PIXEL_CONVENTION = "rgb-float32-0-255-nchw"
"""Identifier written into every generator file so a loader can check it."""

# BT.601 full-range RGB <-> YCbCr, used for colour-preserving stylization.
_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR)


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` upright (EXIF orientation applied) in RGB.

    Transparent pixels are composited onto white, so alpha never turns black.
    """
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """Convert a PIL image to a 1×3×H×W float32 tensor in the pixel convention."""
    array = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float()


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """Convert a 1×3×H×W or 3×H×W tensor in the pixel convention to a PIL RGB image."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0)
    return Image.fromarray(array.cpu().numpy(), mode="RGB")


def fit_within(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """Return ``(width, height)`` scaled down (never up) so the longer side is ≤ ``max_side``."""
    width, height = size
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale ``image`` (Lanczos) so its longer side is at most ``max_side``."""
    target = fit_within(image.size, max_side)
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def rgb_to_ycbcr(tensor: torch.Tensor) -> torch.Tensor:
    """Convert an N×3×H×W RGB tensor to YCbCr (Y in 0–255, Cb/Cr centred on 0)."""
    matrix = _RGB_TO_YCBCR.to(tensor.device, tensor.dtype)
    return torch.einsum("ij,njhw->nihw", matrix, tensor)


def ycbcr_to_rgb(tensor: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`."""
    matrix = _YCBCR_TO_RGB.to(tensor.device, tensor.dtype)
    return torch.einsum("ij,njhw->nihw", matrix, tensor)
