"""Turning one source image into one training photo: decode, flatten, crop, resize, encode.

Every corpus photo goes through :func:`make_photo`, at build time and at install time, so
a photo is the same function of its source file everywhere (the encoder may still differ
by a few bytes between Pillow releases, which is why installs verify the source file and
record what they wrote).
"""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps

SIZE = 512  # shorter side of an installed photo: twice the trainer's default 256 px crop
QUALITY = 92
MAX_ASPECT = 2.0  # panoramas are centre-cropped to 2:1: one photo each, no extra crops
MAX_PIXELS = 200_000_000  # some wallpapers are 5640×3172; refuse anything absurd
BACKGROUND = (224, 224, 224)  # plain light grey behind cut-outs (alpha channel)


def decode(data: bytes) -> Image.Image:
    """Decode image bytes fully, honouring EXIF orientation.

    Raises:
        ValueError: the bytes are not a decodable image or are over :data:`MAX_PIXELS`.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}×{image.height} is over the pixel limit")
            image.load()
    except (OSError, Image.DecompressionBombWarning, Image.UnidentifiedImageError) as exc:
        raise ValueError(f"cannot decode image ({exc})") from exc
    return ImageOps.exif_transpose(image)


def has_alpha(image: Image.Image) -> bool:
    """Return True when the image has a transparency channel or palette transparency."""
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def flatten(image: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Return an RGB image; transparent pixels become ``background``."""
    if has_alpha(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def is_greyscale(image: Image.Image, tolerance: int = 3) -> bool:
    """Return True when all channels are (nearly) equal everywhere."""
    if image.mode in ("L", "LA", "1", "I", "I;16", "F"):
        return True
    small = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int16)
    return bool(np.abs(small - small.mean(axis=2, keepdims=True)).max() <= tolerance)


def fit(image: Image.Image, size: int = SIZE, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Centre-crop to at most ``max_aspect``, then resize so the shorter side is ``size``."""
    width, height = image.size
    long_max = int(min(width, height) * max_aspect)
    if width > long_max:
        left = (width - long_max) // 2
        image = image.crop((left, 0, left + long_max, height))
    elif height > long_max:
        top = (height - long_max) // 2
        image = image.crop((0, top, width, top + long_max))
    scale = size / min(image.size)
    target = (max(size, round(image.width * scale)), max(size, round(image.height * scale)))
    if target == image.size:
        return image
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_jpeg(image: Image.Image, quality: int = QUALITY) -> bytes:
    """Encode RGB as a baseline JPEG without metadata (deterministic for one Pillow)."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, subsampling=0)
    return out.getvalue()


def make_photo(data: bytes, size: int = SIZE, quality: int = QUALITY) -> tuple[bytes, list[str]]:
    """Turn source image bytes into the corpus JPEG.

    Returns:
        ``(jpeg_bytes, tags)``; tags note ``greyscale`` and ``flattened`` (a cut-out with
        transparency laid on a plain background).
    """
    image = decode(data)
    tags = []
    if has_alpha(image):
        tags.append("flattened")
    rgb = flatten(image)
    if is_greyscale(rgb):
        tags.append("greyscale")
        rgb = rgb.convert("L").convert("RGB")  # exact grey: no chroma noise from the source
    return encode_jpeg(fit(rgb, size), quality), tags


def sha256(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def dhash(jpeg: bytes, side: int = 16) -> int:
    """Difference hash of an image (near-duplicates differ in few bits)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        grey = np.asarray(image.convert("L").resize((side + 1, side)), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)
