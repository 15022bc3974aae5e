"""Exceptions raised by :mod:`stylenet`.

Every error the package raises on purpose derives from :class:`StylenetError`, so
callers (the worker, the service) can map the whole family in one place::

    StylenetError
    ├── InvalidParams          bad training / inference parameters
    ├── ImageError             an image that cannot be decoded or is unusable
    ├── ContentImagesError     no usable content images for training
    ├── LossNetworkError
    │   ├── WeightsNotFound    loss-network weights missing (message says how to get them)
    │   └── ChecksumMismatch   a file's digest differs from the expected one
    ├── ModelFileError         a generator file that cannot be served
    └── ExportUnsupported      a generator that cannot be exported to the format asked for
"""

from __future__ import annotations


class StylenetError(Exception):
    """Base class of every error raised on purpose by stylenet."""


class InvalidParams(StylenetError, ValueError):
    """Training or inference parameters are out of range or inconsistent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ImageError(StylenetError, ValueError):
    """An image cannot be decoded or is not usable (too small, empty)."""


class ContentImagesError(StylenetError):
    """The content image folder holds no usable image."""


class LossNetworkError(StylenetError):
    """The loss network cannot be built."""


class WeightsNotFound(LossNetworkError, FileNotFoundError):
    """Loss-network weights are not present; the message says how to get them."""


class ChecksumMismatch(LossNetworkError):
    """A file's digest is not the expected one (corrupted or substituted file)."""

    def __init__(self, path: str, expected: str, actual: str, algorithm: str = "sha256") -> None:
        super().__init__(
            f"{path}: {algorithm} is {actual}, expected {expected}; "
            "the file is corrupted or not the one it claims to be"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelFileError(StylenetError, ValueError):
    """A generator file is corrupt, of another format, or cannot be served by this code."""


class DeviceUnavailable(StylenetError):
    """A device was asked for that this machine does not have (CUDA, or that GPU)."""


class ExportUnsupported(StylenetError, ValueError):
    """A generator cannot be exported faithfully to the format asked for."""
