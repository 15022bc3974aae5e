"""Exceptions of the training worker, and the user-readable reason for any failure.

::

    WorkerError
    ├── TrainingFailed   a failure retrying cannot fix; ``.reason`` is shown to the user
    │   └── TooFewContentPhotos  fewer content photos than STYLIZE_MIN_CONTENT_PHOTOS
    ├── Canceled         the style was canceled or deleted while the job ran
    ├── Interrupted      the worker is shutting down or died; the job is requeued
    ├── StyleBusy        another job holds the style's training lock
    ├── LockLost         this job's training lock was taken over; it must stop writing
    └── DeviceUnavailable  the configured device does not exist on this worker

:func:`describe_failure` maps every exception a job can meet to ``(reason, retryable)``:
errors of the request itself (parameters, style image, content folder, memory) are final;
crashes, timeouts and infrastructure errors are retried, resuming from the checkpoint.
"""

from __future__ import annotations

import re

from rq.timeouts import BaseTimeoutException

from model_store import CorruptRecord
from stylenet import (
    ContentImagesError,
    ImageError,
    InvalidParams,
    LossNetworkError,
    ModelFileError,
    WeightsNotFound,
)


class WorkerError(Exception):
    """Base class of the worker's own exceptions."""


class TrainingFailed(WorkerError):
    """A failure that another attempt would repeat; the style ends ``failed``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooFewContentPhotos(TrainingFailed):
    """The content folder holds fewer photos than the worker's minimum."""

    def __init__(self, found: int, folder: object, minimum: int) -> None:
        super().__init__(
            f"only {found} content photos in {folder} (need at least {minimum}; "
            "run `stylize content install`)"
        )
        self.found, self.minimum = found, minimum


class Canceled(WorkerError):
    """The style was canceled (or deleted): stop quietly and clean up."""


class Interrupted(WorkerError):
    """Training was stopped from outside (shutdown, dead parent); it resumes on retry."""

    def __init__(self, reason: str, *, consumes_retry: bool) -> None:
        super().__init__(reason)
        self.consumes_retry = consumes_retry


class StyleBusy(WorkerError):
    """Another job is training this style (its lease did not end in time)."""


class LockLost(WorkerError):
    """Another job took this style's lease: this one must stop without writing."""


class DeviceUnavailable(WorkerError):
    """``STYLIZE_DEVICE`` names a device this host does not have."""


_BYTES_IO = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>:?")


def readable(message: str) -> str:
    """Drop in-memory file reprs (``<_io.BytesIO object at 0x…>``) from an error message."""
    return _BYTES_IO.sub("", message).strip()


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def describe_failure(exc: BaseException, device: str = "") -> tuple[str, bool]:
    """Return ``(reason, retryable)`` for an exception raised while training a style.

    Args:
        exc: what the job raised.
        device: the training device, mentioned in out-of-memory reasons.
    """
    where = f" on {device}" if device else ""
    if isinstance(exc, TrainingFailed):
        return exc.reason, False
    if isinstance(exc, InvalidParams):
        return f"invalid training parameters: {exc}", False
    if isinstance(exc, ImageError):
        return f"the style image cannot be used: {readable(str(exc))}", False
    if isinstance(exc, ContentImagesError):
        return f"no content images to train on: {exc}", False
    if isinstance(exc, WeightsNotFound):
        return f"the worker is missing the loss-network weights: {exc}", False
    if isinstance(exc, LossNetworkError):
        return f"the loss network cannot be loaded: {exc}", False
    if isinstance(exc, ModelFileError):
        return f"cannot resume training: {exc}", False
    if isinstance(exc, CorruptRecord):
        return f"the stored style is damaged: {exc}", False
    if _is_out_of_memory(exc):
        return (
            f"out of memory{where}: train with a smaller image_size, batch_size or width",
            False,
        )
    if isinstance(exc, Interrupted | DeviceUnavailable | StyleBusy):
        return str(exc), True
    if isinstance(exc, BaseTimeoutException):  # RQ's job timeout (SIGALRM in the horse)
        return f"training took longer than the job timeout ({exc})", True
    return f"training failed unexpectedly ({type(exc).__name__}: {exc})", True
