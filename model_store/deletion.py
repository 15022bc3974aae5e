"""Deleting a style, with a tombstone for a bundled one (part of ``ModelStore``)."""

from __future__ import annotations

import shutil
from dataclasses import replace

from model_store.backend import ManifestChanged
from model_store.bundled import TOMBSTONE, write_tombstone
from model_store.cas import backoff
from model_store.deltas import DeltasMixin, delta_parents
from model_store.errors import Conflict, CorruptRecord, HasDependents, StyleNotFound
from model_store.ids import validate_style_id
from model_store.records import (
    ACTIVE,
    Status,
    StyleRecord,
    bump,
    record_from_json,
    record_to_json,
    utcnow,
)


class DeletionMixin(DeltasMixin):
    """Deleting a style: cancel, manifest, then its files and scratch."""

    def delete(self, style_id: str) -> None:
        """Delete a style with all its versions; a running one is canceled first.

        The cancel is its own committed write, then the manifest is removed (from then
        on the style is gone for every reader), then its files and scratch directory.
        A worker sees the cancel or :class:`StyleNotFound` on its next update or publish.
        A style with a corrupt manifest can still be deleted. Deleting a ``bundled`` style
        leaves a tombstone, so it is not installed again (:mod:`model_store.bundled`).

        A style other styles' versions are stored over (:mod:`model_store.deltas`) is
        refused, before anything changes; the check is part of the compare-and-swap of
        the manifest, so a child marking it meanwhile makes the delete look again.
        Deleting a child drops its marks on its parents.

        Raises:
            StyleNotFound: no such style.
            HasDependents: other styles' stored versions need this one's weights.
        """
        sid = validate_style_id(style_id)
        incarnation = None
        tombstoned = False
        began = utcnow()
        for attempt in range(self.max_attempts):
            got = self._backend.read_manifest(sid)
            if got is None:
                raise StyleNotFound(sid)
            data, token = got
            try:
                rec: StyleRecord | None = record_from_json(sid, data)
            except CorruptRecord:
                rec = None
            if rec is not None and rec.dependents:
                live = self._live_dependents(rec)
                if live:
                    if tombstoned:  # written in a try that lost a race: not deleted after all
                        self._backend.delete_blobs(sid, [TOMBSTONE])
                    raise HasDependents(sid, live)
            try:
                if rec is not None and rec.bundled and not tombstoned:
                    # Before the manifest goes: a crash in between must not lose the
                    # deletion (the next start would install the style again).
                    write_tombstone(self._backend, rec)
                    tombstoned = True
                if rec is not None and rec.status in ACTIVE:
                    canceled = bump(replace(rec, status=Status.CANCELED), rec)
                    token = self._backend.write_manifest(sid, record_to_json(canceled), token)
                    self._stage("delete-canceled")
                self._backend.delete_manifest(sid, token)
            except ManifestChanged:
                backoff(attempt)
                continue
            incarnation = None if rec is None else rec.incarnation
            break
        else:
            raise Conflict(sid, self.max_attempts)
        keys = [key for key, _ in self._backend.list_blobs(sid) if key != TOMBSTONE]
        if incarnation is not None:
            # Only this incarnation: the id may already have been re-created.
            keys = [k for k in keys if k.startswith(incarnation + "/")]
        self._backend.delete_blobs(sid, keys)
        shutil.rmtree(self._scratch_root / sid, ignore_errors=True)
        if rec is not None:
            # Marks made before this delete began: a later one is a re-created style's.
            self._release(sid, delta_parents(rec), older_than=began)
