"""Scratch (checkpoint) folders and garbage collection (part of ``ModelStore``)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from model_store.clips import AREA, ClipArea
from model_store.core import StoreCore
from model_store.errors import CorruptRecord, StyleNotFound
from model_store.gc import DEFAULT_GC_MIN_AGE_S, collect_garbage
from model_store.ids import is_valid_style_id, validate_style_id
from model_store.records import ACTIVE


class MaintenanceMixin(StoreCore):
    """A style's checkpoint folder, and removing what nothing needs any more."""

    def scratch_dir(self, style_id: str) -> Path:
        """Return (creating it) a local directory for the style's training checkpoints.

        For the file backend it lives on the store volume (``<root>/scratch/<id>``) so a
        job retried on another host of the same volume can resume; for S3 it is local to
        the host (``scratch_root``). ``delete`` removes it.
        """
        path = self._scratch_root / validate_style_id(style_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def clips(self) -> ClipArea:
        """The clip jobs' files (``POST /videos``): :mod:`model_store.clips`."""
        return ClipArea(self._scratch_root / AREA)

    def gc(self, min_age_s: float = DEFAULT_GC_MIN_AGE_S) -> list[str]:
        """Remove what nothing needs any more, older than ``min_age_s``; return it.

        * files no manifest references (crashed publishes/creates/deletes, replaced
          previews); styles whose manifest is corrupt are left untouched;
        * the backend's own leftovers (the file store's lock files of deleted styles);
        * scratch (checkpoint) folders of styles that are gone or have no run going on
          (``ready``, ``failed``, ``canceled``): a run holds its style ``queued`` or
          ``training`` for as long as it writes there. Reported as ``scratch/<id>``.
        """
        removed = collect_garbage(self._backend, min_age_s)
        removed += self._backend.collect_orphans(min_age_s)
        removed += self._collect_scratch(min_age_s)
        return removed

    def _collect_scratch(self, min_age_s: float) -> list[str]:
        removed = []
        now = time.time()
        try:
            folders = [p for p in self._scratch_root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        for folder in folders:
            if not is_valid_style_id(folder.name):
                continue
            try:
                newest = max(
                    [folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*"))]
                )
            except FileNotFoundError:
                continue  # removed meanwhile
            if now - newest < min_age_s:
                continue
            try:
                if self.get(folder.name).status in ACTIVE:
                    continue
            except StyleNotFound:
                pass
            except CorruptRecord:
                continue  # nothing proves the run is over
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(f"scratch/{folder.name}")
        return removed
