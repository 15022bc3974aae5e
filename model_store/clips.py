"""Clip jobs' files (``POST /videos``): the upload and its result, shared by API and worker.

The API stores an upload here before it enqueues the job; the worker reads it, writes
the result next to it, and the API serves that. The area is ``<scratch root>/_clips``
(``_`` keeps it apart from the style ids the scratch root's checkpoint folders are
named by, and from :meth:`ModelStore.gc`, which only looks at those): on the file
store's volume, so API and worker processes sharing the volume share it; with an S3
store the scratch root is local to a host, and the API and worker must run on one host
(or set ``scratch_root`` to a shared volume).

Layout: ``_clips/<id>/input.<ext>`` and ``_clips/<id>/result.<ext>``, each written under
a temporary name and renamed, so a reader sees nothing or the whole file.

The job's state lives in Redis (the hash :func:`state_key`, written by both sides); this
module names it so that both sides use one contract without importing each other.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from model_store.file_backend import atomic_write

#: The RQ job function, enqueued by dotted path (the service never imports ``worker``).
VIDEO_FUNCTION = "worker.videos.stylize_video"
#: States of a clip job, in the Redis hash's ``state`` field.
QUEUED, RUNNING, DONE, FAILED, CANCELED = "queued", "running", "done", "failed", "canceled"
TERMINAL = frozenset({DONE, FAILED, CANCELED})
#: Folder of the area under the scratch root.
AREA = "_clips"
_ID_RE = re.compile(r"[a-z0-9]{20,40}")
_SUFFIX_RE = re.compile(r"\.[a-z0-9]{1,5}")


def new_clip_id() -> str:
    """Return a fresh clip id: 26 base32 characters (130 random bits, unguessable)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def is_valid_clip_id(clip_id: object) -> bool:
    """Whether ``clip_id`` has the shape :func:`new_clip_id` makes (safe in a path)."""
    return isinstance(clip_id, str) and _ID_RE.fullmatch(clip_id) is not None


def state_key(clip_id: str) -> str:
    """Return the Redis hash holding a clip job's state, progress, error and result."""
    return f"stylize:video:{clip_id}"


def job_id(clip_id: str) -> str:
    """Return the RQ job id of a clip job."""
    return f"video-{clip_id}"


class ClipArea:
    """The clip jobs' files under one root (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created on the first write)."""
        self.root = root

    def folder(self, clip_id: str) -> Path:
        """Return the clip's folder (not created).

        Raises:
            ValueError: not a clip id (nothing else may become a path).
        """
        if not is_valid_clip_id(clip_id):
            raise ValueError(f"not a clip id: {clip_id!r}")
        return self.root / clip_id

    def put_input(self, clip_id: str, data: bytes, suffix: str) -> Path:
        """Store an upload atomically; return its path."""
        if not _SUFFIX_RE.fullmatch(suffix):
            raise ValueError(f"unsafe suffix {suffix!r}")
        path = self.folder(clip_id) / f"input{suffix}"
        atomic_write(path, data)
        return path

    def input_path(self, clip_id: str) -> Path | None:
        """Return the stored upload, None when it is gone."""
        return next(iter(sorted(self.folder(clip_id).glob("input.*"))), None)

    def result_path(self, clip_id: str, suffix: str) -> Path:
        """Return where the result goes (the writer renames into it when complete)."""
        if not _SUFFIX_RE.fullmatch(suffix):
            raise ValueError(f"unsafe suffix {suffix!r}")
        return self.folder(clip_id) / f"result{suffix}"

    def delete(self, clip_id: str) -> None:
        """Remove the clip's files (nothing if they are gone)."""
        shutil.rmtree(self.folder(clip_id), ignore_errors=True)

    def count(self) -> int:
        """How many clips have files here."""
        try:
            return sum(1 for p in self.root.iterdir() if is_valid_clip_id(p.name))
        except FileNotFoundError:
            return 0

    def sweep(self, alive: Callable[[str], bool], min_age_s: float = 600.0) -> list[str]:
        """Remove the folders of clips ``alive`` says are gone, older than ``min_age_s``.

        A job's state expires in Redis (the results' TTL) and its files follow here. The
        age guard covers an upload stored a moment before its state is written.
        """
        removed = []
        now = time.time()
        try:
            folders = [p for p in self.root.iterdir() if is_valid_clip_id(p.name)]
        except FileNotFoundError:
            return []
        for folder in folders:
            try:
                if now - folder.stat().st_mtime < min_age_s or alive(folder.name):
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        return removed


__all__ = [
    "AREA",
    "CANCELED",
    "DONE",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "TERMINAL",
    "VIDEO_FUNCTION",
    "ClipArea",
    "is_valid_clip_id",
    "job_id",
    "new_clip_id",
    "state_key",
]
