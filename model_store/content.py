"""Checks on the bytes the store accepts: safetensors weights and images.

The store never interprets weights beyond proving they are a safetensors file, and it
never unpickles anything: a ``torch.save`` pickle offered as weights is rejected here.
"""

from __future__ import annotations

import hashlib

from safetensors import SafetensorError, deserialize

from model_store.errors import InvalidWeights

#: Magic-number prefixes -> (content type, file extension). Only sniffed to label the
#: stored file and to serve it back with a sensible ``Content-Type``; decoding and
#: validating pixels is the service's job.
_IMAGE_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"BM", "image/bmp", "bmp"),
    (b"II*\x00", "image/tiff", "tiff"),
    (b"MM\x00*", "image/tiff", "tiff"),
)


def sha256_hex(data: bytes) -> str:
    """Return the hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sniff_image(data: bytes) -> tuple[str, str]:
    """Return ``(content_type, extension)`` guessed from the leading bytes."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    for magic, content_type, ext in _IMAGE_MAGIC:
        if data.startswith(magic):
            return content_type, ext
    return "application/octet-stream", "bin"


def check_safetensors(data: bytes) -> int:
    """Verify ``data`` is a complete safetensors file with at least one tensor.

    Args:
        data: candidate weights bytes.

    Returns:
        The number of tensors.

    Raises:
        InvalidWeights: on anything else (pickles, truncated or padded files, a header
            whose offsets do not cover the buffer exactly, an empty tensor dict).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidWeights(f"expected bytes, got {type(data).__name__}")
    try:
        # The Rust parser checks the header size, JSON, dtypes, shapes and that the
        # offsets tile the data buffer exactly; it copies the tensor bytes, which is
        # acceptable for generator-sized files (a few MB).
        tensors = deserialize(bytes(data))
    except SafetensorError as exc:
        raise InvalidWeights(str(exc)) from exc
    except Exception as exc:  # malformed input may surface as other binding errors
        raise InvalidWeights(f"{type(exc).__name__}: {exc}") from exc
    if not tensors:
        raise InvalidWeights("no tensors")
    return len(tensors)
