"""Versions of a style's weights: publish, score, read back (part of ``ModelStore``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from model_store.content import check_safetensors, sha256_hex
from model_store.deltas import DeltasMixin, MarkExpired, delta_parents, pinned_versions
from model_store.errors import InvalidTransition, StyleNotFound, VersionNotFound
from model_store.ids import validate_style_id
from model_store.records import BlobInfo, Status, StyleRecord, VersionInfo, utcnow


class VersionsMixin(DeltasMixin):
    """Publishing, scoring and reading versions of a style's safetensors weights."""

    def publish(
        self,
        style_id: str,
        weights: bytes,
        *,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        keep_versions: int | None = None,
    ) -> VersionInfo:
        """Store ``weights`` as the style's next version and make it current (``ready``).

        The safetensors bytes are written first (atomically, under a content-addressed
        name), the manifest last, by compare-and-swap: concurrent publishers each get
        their own version number, and a crash before the manifest write leaves the
        previous version serving.

        When ``metrics["init"]`` names another stored style's version the run started
        from, only the tensors that differ from it are stored (with that version's id
        and sha256, :mod:`model_store.deltas`); reads rebuild the same bytes.

        Args:
            style_id: the style.
            weights: a safetensors file.
            metadata: what loading needs (architecture, training params), JSON.
            metrics: held-out losses, training time, device, JSON.
            keep_versions: keep only this many newest versions (the new one included)
                in the manifest; the weights of the dropped ones become unreferenced and
                :meth:`gc` deletes them. None keeps every version. Versions other
                styles' deltas are stored over stay.

        Raises:
            InvalidWeights: ``weights`` are not a non-empty safetensors file.
            StyleNotFound: no such style (deleted meanwhile, say).
            InvalidTransition: the style was canceled.
            ValueError, TypeError: ``metadata``/``metrics`` are not JSON (NaN included).
        """
        sid = validate_style_id(style_id)
        if keep_versions is not None and keep_versions < 1:
            raise ValueError("keep_versions must be >= 1")
        check_safetensors(weights)
        weights = bytes(weights)  # one immutable copy: what is hashed is what is stored
        # Refuse unserialisable metadata now, not after the weights are uploaded.
        json.dumps([metadata or {}, metrics or {}], allow_nan=False)
        sha = sha256_hex(weights)
        start = self.get(sid)
        self._check_publishable(start)
        stored = self._put_weights(start, sha, weights, metrics)
        marked = stored.parents()
        self._stage("weights-written")
        created = utcnow()

        def add_version(cur: StyleRecord) -> StyleRecord:
            if cur.incarnation != start.incarnation:
                raise StyleNotFound(sid)  # deleted and re-created: not our style any more
            self._check_publishable(cur)
            stored.check_fresh()
            number = max((v.version for v in cur.versions), default=0) + 1
            version = VersionInfo(
                number,
                sha,
                len(weights),
                created,
                dict(metadata or {}),
                dict(metrics or {}),
                stored.name,
                delta=stored.delta,
            )
            versions = _keep_newest((*cur.versions, version), keep_versions, pinned_versions(cur))
            return replace(
                cur,
                versions=versions,
                current_version=number,
                status=Status.READY,
                metrics=dict(metrics or {}),
                error=None,
                progress=None,  # the run is over: no "240/300, ETA 5 s" on a ready style
                # The run's preview shows what the new version does: it becomes the picture.
                preview=cur.run_preview or cur.preview,
                run_preview=None,
            )

        try:
            rec = self._mutate(sid, add_version)
        except MarkExpired:  # the parent's mark may look stale by now: go full
            stored = self._put_full(start, sha, weights)
            rec = self._mutate(sid, add_version)
        self._release_unneeded(rec, delta_parents(start) | marked)
        info = rec.version_info()
        assert info is not None  # add_version set current_version
        return info

    def set_score(self, style_id: str, version: int, score: Mapping[str, Any]) -> StyleRecord:
        """Record a version's quality score (``metrics["score"]``), measured after publishing.

        The record's own ``metrics`` follow when ``version`` is the current one. A version
        that left the manifest meanwhile (dropped by ``keep_versions``) is left alone.

        Raises:
            StyleNotFound: no such style (deleted meanwhile).
            ValueError, TypeError: ``score`` is not JSON.
        """
        sid = validate_style_id(style_id)
        score = dict(score)
        json.dumps(score, allow_nan=False)

        def scored(cur: StyleRecord) -> StyleRecord:
            versions = tuple(
                replace(v, metrics={**v.metrics, "score": score}) if v.version == version else v
                for v in cur.versions
            )
            metrics = cur.metrics
            if cur.current_version == version:
                metrics = {**cur.metrics, "score": score}
            return replace(cur, versions=versions, metrics=metrics)

        return self._mutate(sid, scored)

    def open_weights(self, style_id: str, version: int | None = None) -> bytes:
        """Return the safetensors bytes of a version (default: current), sha256-verified.

        Raises:
            StyleNotFound: no such style.
            VersionNotFound: no such version, or nothing published yet.
            ChecksumMismatch: the stored bytes (or, for a delta, the rebuilt file) differ
                from what was published.
            CorruptRecord: the manifest is damaged, the weights file is missing, or a
                delta's parent is gone or damaged.
        """
        rec = self.get(style_id)
        info = rec.version_info(version)
        if info is None:
            raise VersionNotFound(rec.id, version)
        if info.delta is not None:
            return self._rebuild(rec, info)
        blob = BlobInfo(info.name, info.sha256, info.size, "application/octet-stream")
        return self._read_verified(rec, blob, version=info.version)

    def _check_publishable(self, rec: StyleRecord) -> None:
        # Ready and failed styles still accept a publish: a duplicate or retried job
        # finishing late produces a good version. Only a cancel is final.
        if rec.status is Status.CANCELED:
            raise InvalidTransition(rec.id, rec.status, Status.READY)


def _keep_newest(
    versions: tuple[VersionInfo, ...], keep: int | None, pinned: set[int]
) -> tuple[VersionInfo, ...]:
    """Return the newest ``keep`` versions (oldest first), plus any ``pinned`` older one."""
    if keep is None:
        return versions
    newest = {v.version for v in versions[-keep:]}
    return tuple(v for v in versions if v.version in newest or v.version in pinned)
