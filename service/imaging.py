"""Untrusted image bytes in, pixel arrays out, and back: the service's only codec code.

Decoding is defensive: the format is sniffed from magic bytes and only JPEG, PNG and
WebP decoders are ever run; the pixel count is checked from the header *before* any
pixel is decoded (decompression bombs); truncated files are errors, never half images.
Pixels travel as ``H×W×3`` uint8 RGB arrays, upright (EXIF applied) with alpha
composited on white by :func:`stylenet.pixels.to_rgb`, which is the same conversion
:func:`stylenet.pixels.image_to_tensor` applies before scaling to the float 0–255
convention. These functions block; the runtime calls them in its codec thread pool.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import BadRequest, InvalidOption, TooManyPixels, UnsupportedMediaType
from stylenet.generators import MIN_SIDE
from stylenet.pixels import fit_within, resize_within, to_rgb

if TYPE_CHECKING:
    import torch

#: Output formats and their media types; inputs are sniffed into the same names.
MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}

#: Recognized but refused: answered with 415 rather than "not an image".
_OTHER_IMAGES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"8BPS", "psd"),
    (b"qoif", "qoi"),
    (b"\x00\x00\x00\x0cjP  ", "jpeg2000"),
    (b"\xff\x0a", "jpegxl"),
    (b"\x00\x00\x00\x0cJXL ", "jpegxl"),
)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded request image.

    Attributes:
        pixels: ``H×W×3`` uint8 RGB, upright, already downscaled to ``max_side``: a
            numpy array from this module, or a (possibly strided) ``torch.Tensor`` on the
            runtime's device from :class:`service.codecs.ImageCodecs`' JPEG path.
        format: the input's family (``jpeg``, ``png`` or ``webp``).
        source_size: ``(width, height)`` as stored in the file, before any resizing.
    """

    pixels: np.ndarray | torch.Tensor
    format: str
    source_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of :attr:`pixels`."""
        return self.pixels.shape[1], self.pixels.shape[0]


def sniff(data: bytes) -> str | None:
    """Return the image format of ``data`` from its magic bytes, or None if unknown."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in _OTHER_IMAGES:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "heif/avif"
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096]):
        return "svg"
    return None


def decode(data: bytes, *, max_pixels: int, max_side: int | None) -> DecodedImage:
    """Decode untrusted bytes into an upright RGB array no longer than ``max_side``.

    Raises:
        BadRequest: empty input (``empty_image``), not an image (``not_an_image``),
            corrupt or truncated (``invalid_image``).
        UnsupportedMediaType: an image, but not JPEG, PNG or WebP.
        TooManyPixels: the header declares more than ``max_pixels`` pixels.
        InvalidOption: the (resized) image is smaller than the generators accept.
    """
    kind = check_kind(data)
    # formats=[...]: only the sniffed decoder runs, never PIL's whole plugin zoo.
    with (
        pil_errors(kind, max_pixels),
        Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as image,
    ):
        width, height = image.size
        check_pixels(width, height, max_pixels)
        target = fit_within((width, height), max_side)
        if kind == "jpeg" and target != (width, height):
            # DCT-domain downscaling (1/2, 1/4, 1/8) while decoding: a 4000 px photo
            # asked at 1024 px decodes ~10× faster. Never below the target size.
            image.draft("RGB", target)
        image.load()
        rgb = resize_within(to_rgb(image), max_side)
    check_min_side(rgb.width, rgb.height)
    return DecodedImage(np.asarray(rgb, dtype=np.uint8), kind, (width, height))


def probe(data: bytes, *, max_pixels: int, max_side: int | None) -> tuple[int, int]:
    """Return ``(width, height)`` that :func:`decode` will produce, from the header only.

    No pixel is decoded (PIL reads the header lazily): this is what admission by cost
    charges before the decode. Raises what :func:`decode` raises for the header.
    """
    kind = check_kind(data)
    with (
        pil_errors(kind, max_pixels),
        Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as image,
    ):
        width, height = image.size
    check_pixels(width, height, max_pixels)
    return fit_within((width, height), max_side)


def header_pixels(data: bytes) -> int:
    """Return ``width × height`` as stored in the header of ``data`` (already probed)."""
    kind = check_kind(data)
    with (
        pil_errors(kind, 0),
        Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as image,
    ):
        width, height = image.size
    return width * height


def check_kind(data: bytes) -> str:
    """Return the format of ``data`` if the service decodes it (``jpeg``, ``png``, ``webp``).

    Raises:
        BadRequest: empty input (``empty_image``) or not an image (``not_an_image``).
        UnsupportedMediaType: an image, but not JPEG, PNG or WebP.
    """
    if not data:
        raise BadRequest("the image is empty (0 bytes)", code="empty_image")
    kind = sniff(data)
    if kind is None:
        raise BadRequest("the body is not a JPEG, PNG or WebP image", code="not_an_image")
    if kind not in _PIL_FORMATS:
        raise UnsupportedMediaType(
            f"{kind} images are not supported; send JPEG, PNG or WebP", format=kind
        )
    return kind


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`TooManyPixels` if a header's ``width × height`` exceeds ``max_pixels``."""
    if width * height > max_pixels:
        raise TooManyPixels(
            f"the image is {width}×{height} = {width * height} pixels; the limit is {max_pixels}",
            width=width,
            height=height,
            limit=max_pixels,
        )


def check_min_side(width: int, height: int) -> None:
    """Raise :class:`InvalidOption` if a (resized) image is smaller than generators accept."""
    if min(width, height) < MIN_SIDE:
        raise InvalidOption(
            f"the image is {width}×{height} after resizing; "
            f"both sides must be at least {MIN_SIDE} px",
            code="image_too_small",
        )


@contextmanager
def pil_errors(kind: str, max_pixels: int) -> Iterator[None]:
    """Map what PIL raises while opening or decoding ``kind`` bytes to the service's errors.

    Raises:
        TooManyPixels: PIL's own decompression-bomb guard fired.
        BadRequest: corrupt or truncated (``invalid_image``).
    """
    try:
        yield
    except Image.DecompressionBombError as exc:
        # PIL's own guard fires first for the most extreme headers (> ~179 MP).
        raise TooManyPixels(
            f"the image declares too many pixels ({exc}); the limit is {max_pixels}",
            limit=max_pixels,
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        # PIL reports truncated and corrupt streams as OSError / SyntaxError / EOFError.
        raise BadRequest(
            f"cannot decode the {kind} image: {exc}", code="invalid_image", format=kind
        ) from exc


def pil_format(kind: str) -> str:
    """Return PIL's format name for a sniffed ``kind`` (``jpeg`` -> ``JPEG``)."""
    return _PIL_FORMATS[kind]


def encode(pixels: np.ndarray, fmt: str, quality: int | None = None) -> bytes:
    """Encode an ``H×W×3`` uint8 RGB array as ``fmt`` (``jpeg``, ``png`` or ``webp``).

    ``quality`` (1–100) applies to JPEG and WebP (default 90); PNG is lossless and uses
    a fast compression level, since encoding sits on every request's critical path.
    """
    out = io.BytesIO()
    encode_into(out, pixels, fmt, quality)
    return out.getvalue()


def encode_into(out: BinaryIO, pixels: np.ndarray, fmt: str, quality: int | None = None) -> int:
    """Encode as :func:`encode` does, into the file ``out``; return the bytes written."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    start = out.tell()
    if fmt == "jpeg":
        image.save(out, "JPEG", quality=quality or 90)
    elif fmt == "webp":
        image.save(out, "WEBP", quality=quality or 90, method=4)
    elif fmt == "png":
        image.save(out, "PNG", compress_level=3)
    else:
        raise InvalidOption(f"unknown output format {fmt!r}", field="format")
    return out.tell() - start
