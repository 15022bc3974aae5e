"""Garbage collection: files no manifest references, left by crashes and replacements."""

from __future__ import annotations

import logging
import time

from model_store.backend import Backend
from model_store.bundled import TOMBSTONE
from model_store.errors import CorruptRecord
from model_store.records import record_from_json

log = logging.getLogger(__name__)

#: Default age below which ``gc`` leaves unreferenced files alone: it must exceed the
#: longest time between a publish's blob write and its manifest write, or gc could
#: remove the weights of a publish that is about to commit.
DEFAULT_GC_MIN_AGE_S = 3600.0


def collect_garbage(backend: Backend, min_age_s: float = DEFAULT_GC_MIN_AGE_S) -> list[str]:
    """Delete unreferenced files older than ``min_age_s``; return ``<id>/<key>`` of each.

    Covers weights of a publish that crashed before its manifest write, the image of a
    create that lost, files of a half-finished delete, replaced previews and temporary
    files of interrupted writes. A style whose manifest is corrupt is left untouched:
    with the manifest unreadable, nothing proves its files are unreferenced.
    """
    if min_age_s < 0:
        raise ValueError("min_age_s must be >= 0")
    now = time.time()
    removed: list[str] = []
    for sid in backend.list_style_ids():
        got = backend.read_manifest(sid)
        referenced: set[str] = set()
        if got is not None:
            try:
                rec = record_from_json(sid, got[0])
            except CorruptRecord as exc:
                log.warning("gc leaves corrupt style alone: %s", exc)
                continue
            referenced = {f"{rec.incarnation}/{n}" for n in rec.blob_names()}
        stale = [
            key
            for key, mtime in backend.list_blobs(sid)
            if key not in referenced and key != TOMBSTONE and now - mtime >= min_age_s
        ]
        if stale:
            backend.delete_blobs(sid, stale)
            removed.extend(f"{sid}/{key}" for key in stale)
    return removed
