"""Versions stored as deltas over another style's weights (part of ``ModelStore``).

A run that started from another stored style (``metrics["init"]`` of kind ``style``)
usually changed few of its tensors: a γ/β-only adaptation shares every convolution with
its start. ``publish`` then stores only the tensors that differ
(:mod:`model_store.delta_format`) and the parent's id, version and sha256
(:class:`~model_store.lineage.DeltaInfo`); ``open_weights`` rebuilds the full file and
checks it against the sha256 recorded at publish.

**Chains are flattened at publish**: a child of a style that is itself a delta is stored
over that style's own parent, a full file (the child's tensors are diffed against it).
So a read costs one parent read however long the lineage, a delta's parent is always a
full file (reads refuse anything deeper), and deleting a style in the middle of a chain
never strands its children. For γ/β-only chains the delta is as small either way (the
convolutions are the root's); a delta over half the full file is not stored at all.

**Dependents and deletion.** The parent's manifest lists its dependents
(:class:`~model_store.lineage.Dependent`), written by compare-and-swap *before* the
child's manifest names the delta. ``delete`` refuses a style with live dependents inside
its own compare-and-swap loop, so the two races resolve:

* the mark lands before the delete's manifest write: the delete's token is stale, it
  re-reads, sees the mark and refuses;
* the delete lands first: the mark finds no parent, and the child is stored full.

A mark whose style does not (yet) hold such a version is a publish in flight; it counts
for :data:`MARK_GRACE_S`, and a publisher that could not commit within half of that falls
back to the full file, so a delete never takes a parent a child is about to need (up to
half the grace of clock skew between hosts). Marks are removed when the child is deleted
or, once older than the grace, when its versions over the parent leave its history;
marks that outlive a crash only pin the parent's versions (``keep_versions`` keeps the
versions dependents need) until a delete finds them stale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from model_store.content import sha256_hex
from model_store.core import StoreCore
from model_store.delta_format import DeltaError, apply_delta, make_delta, read_index
from model_store.errors import (
    ChecksumMismatch,
    CorruptRecord,
    ModelStoreError,
    StyleNotFound,
    VersionNotFound,
)
from model_store.ids import validate_style_id
from model_store.lineage import DeltaInfo, Dependent, ParentRef, parent_from_init
from model_store.records import BlobInfo, StyleRecord, VersionInfo, utcnow

log = logging.getLogger(__name__)

#: How long a dependent's mark counts without the version it announced (a publish in
#: flight). As ``gc``'s minimum age: longer than any publish between its writes.
MARK_GRACE_S = 3600.0
#: A delta larger than this share of the full file is not worth a dependency.
MAX_DELTA_SHARE = 0.5
_OCTETS = "application/octet-stream"


class MarkExpired(Exception):  # a retry signal internal to the package
    """A publisher took too long between marking the parent and committing: go full."""


@dataclass(frozen=True)
class StoredWeights:
    """Where a publish put a version's weights: the file name and, for a delta, its record."""

    name: str
    delta: DeltaInfo | None = None
    #: ``time.monotonic()`` when the parent was marked (deltas only).
    marked_at: float = 0.0

    def parents(self) -> set[ParentRef]:
        """Return the parent this publish marked (none for a full file)."""
        return set() if self.delta is None else {self.delta.parent}

    def check_fresh(self) -> None:
        """Raise :class:`MarkExpired` when the parent's mark may be counted stale by now."""
        if self.delta is not None and time.monotonic() - self.marked_at > MARK_GRACE_S / 2:
            raise MarkExpired


class DeltasMixin(StoreCore):
    """Storing versions as deltas, rebuilding them, and the dependents they create."""

    def dependents(self, style_id: str) -> list[str]:
        """Return the ids of styles whose kept versions are stored over this style's.

        Marks of publishes in flight count; stale marks (a style deleted, or its
        versions over this one gone for longer than :data:`MARK_GRACE_S`) do not.

        Raises:
            StyleNotFound: no such style.
            CorruptRecord: its manifest is damaged.
        """
        return self._live_dependents(self.get(style_id))

    # --- publish -----------------------------------------------------------------------

    def _put_weights(
        self, start: StyleRecord, sha: str, weights: bytes, metrics: Mapping[str, Any] | None
    ) -> StoredWeights:
        """Write the weights as a delta when they have a stored parent, else in full."""
        parent = parent_from_init(metrics)
        own = parent is None or parent.style_id == start.id  # a retrain: no other style
        plan = None if own else self._plan(parent, weights)
        if plan is not None:
            root, delta = plan
            name = f"weights/{sha}.delta"
            self._put_own_blob(start, name, delta)
            self._stage("delta-written")
            try:
                self._mark(root, start.id)
            except (StyleNotFound, VersionNotFound) as exc:
                # The parent went meanwhile: nothing to depend on, store the whole file.
                log.info("style %s: storing in full: %s", start.id, exc)
            else:
                info = DeltaInfo(root, sha256_hex(delta), len(delta))
                return StoredWeights(name, info, time.monotonic())
        return self._put_full(start, sha, weights)

    def _put_full(self, start: StyleRecord, sha: str, weights: bytes) -> StoredWeights:
        name = f"weights/{sha}.safetensors"
        self._put_own_blob(start, name, weights)
        return StoredWeights(name)

    def _plan(self, parent: ParentRef, weights: bytes) -> tuple[ParentRef, bytes] | None:
        """Return the full-file ancestor to store over and the delta, or None: store full."""
        try:
            info = self.get(parent.style_id).version_info(parent.version)
            if info is None or info.sha256 != parent.sha256:
                return None  # not the weights the run started from
            root = parent if info.delta is None else info.delta.parent  # flatten the chain
            delta = make_delta(weights, self._open_full(root))
        except (ModelStoreError, DeltaError) as exc:
            log.info("not storing a delta over %s v%d: %s", parent.style_id, parent.version, exc)
            return None
        if len(delta) > len(weights) * MAX_DELTA_SHARE:
            return None
        return root, delta

    def _mark(self, parent: ParentRef, child_id: str) -> None:
        """Record ``child_id`` as a dependent of ``parent`` (compare-and-swap).

        Raises:
            StyleNotFound, VersionNotFound: the parent or that version of it is gone.
        """
        key = (child_id, parent.version)

        def mark(cur: StyleRecord) -> StyleRecord:
            info = cur.version_info(parent.version)
            if info is None or info.sha256 != parent.sha256:
                raise VersionNotFound(cur.id, parent.version)
            others = [d for d in cur.dependents if (d.style_id, d.version) != key]
            return replace(cur, dependents=(*others, Dependent(child_id, parent.version, utcnow())))

        self._mutate(parent.style_id, mark)

    def _release(self, child_id: str, parents: set[ParentRef], *, older_than: datetime) -> None:
        """Drop ``child_id``'s marks made before ``older_than`` on ``parents``.

        Best effort: a mark left behind only pins the parent's version until a delete
        finds it stale, so failures are logged, not raised.
        """
        for parent in parents:
            key = (child_id, parent.version)

            def unmark(cur: StyleRecord, key: tuple[str, int] = key) -> StyleRecord:
                kept = tuple(
                    d
                    for d in cur.dependents
                    if (d.style_id, d.version) != key or d.since >= older_than
                )
                return replace(cur, dependents=kept)

            try:
                self._mutate(parent.style_id, unmark)
            except StyleNotFound:
                pass
            except ModelStoreError as exc:
                log.warning("style %s: could not drop its mark on %s: %s", child_id, parent, exc)

    def _release_unneeded(self, rec: StyleRecord, parents: set[ParentRef]) -> None:
        """Drop ``rec``'s old marks on those of ``parents`` no kept version is stored over.

        Only marks older than :data:`MARK_GRACE_S`: a newer one may be a concurrent
        publish of this style (a duplicate job), about to need that parent.
        """
        gone = parents - delta_parents(rec)
        if gone:
            old = utcnow() - timedelta(seconds=MARK_GRACE_S)
            self._release(rec.id, gone, older_than=old)

    # --- read --------------------------------------------------------------------------

    def _open_full(self, ref: ParentRef) -> bytes:
        """Return a parent's full weights file, verified against ``ref``."""
        rec = self.get(ref.style_id)
        info = rec.version_info(ref.version)
        if info is None:
            raise VersionNotFound(rec.id, ref.version)
        if info.delta is not None or info.sha256 != ref.sha256:
            # Publish flattens chains and versions are immutable: this is damage.
            raise CorruptRecord(rec.id, f"version {ref.version} is not the full file expected")
        blob = BlobInfo(info.name, info.sha256, info.size, _OCTETS)
        return self._read_verified(rec, blob, version=info.version)

    def _rebuild(self, rec: StyleRecord, info: VersionInfo) -> bytes:
        """Return the full weights of a delta version: its parent's tensors plus its own."""
        assert info.delta is not None
        blob = BlobInfo(info.name, info.delta.sha256, info.delta.size, _OCTETS)
        delta = self._read_verified(rec, blob, version=info.version)
        parent = info.delta.parent
        where = f"version {info.version} is stored over {parent.style_id} v{parent.version}"
        try:
            # _open_full verified the parent against parent.sha256: not hashed again.
            full = apply_delta(delta, self._open_full(parent), parent_sha256=parent.sha256)
            made_from = read_index(delta)["sha256"]  # apply_delta checked full against it
        except (StyleNotFound, VersionNotFound):
            raise CorruptRecord(rec.id, f"{where}, which is gone") from None
        except CorruptRecord as exc:
            raise CorruptRecord(rec.id, f"{where}, which is damaged: {exc.reason}") from None
        except DeltaError as exc:
            raise CorruptRecord(rec.id, f"{where} and cannot be rebuilt: {exc}") from None
        if made_from != info.sha256 or len(full) != info.size:
            raise ChecksumMismatch(rec.id, info.version, info.sha256, made_from)
        return full

    # --- delete ------------------------------------------------------------------------

    def _live_dependents(self, rec: StyleRecord) -> list[str]:
        """Ids of ``rec``'s dependents that hold, or may be about to hold, a delta over it."""
        live: set[str] = set()
        fresh_since = utcnow() - timedelta(seconds=MARK_GRACE_S)
        for dep in rec.dependents:
            try:
                child = self.get(validate_style_id(dep.style_id))
            except StyleNotFound:
                continue  # deleted (its delete could not drop the mark)
            except CorruptRecord:
                live.add(dep.style_id)  # unreadable: nothing proves it needs nothing
                continue
            needs = any(
                v.delta is not None
                and (v.delta.parent.style_id, v.delta.parent.version) == (rec.id, dep.version)
                for v in child.versions
            )
            if needs or dep.since >= fresh_since:
                live.add(dep.style_id)
        return sorted(live)


def pinned_versions(rec: StyleRecord) -> set[int]:
    """Versions of ``rec`` that dependents' marks keep in its history."""
    return {d.version for d in rec.dependents}


def delta_parents(rec: StyleRecord) -> set[ParentRef]:
    """Return the parents ``rec``'s versions are stored over."""
    return {v.delta.parent for v in rec.versions if v.delta is not None}


__all__ = [
    "MARK_GRACE_S",
    "MAX_DELTA_SHARE",
    "DeltasMixin",
    "MarkExpired",
    "StoredWeights",
    "delta_parents",
    "pinned_versions",
]
