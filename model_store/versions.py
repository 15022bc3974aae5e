"""Versions of a style's weights: publish, score, read back (part of ``ModelStore``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from model_store.content import check_safetensors, sha256_hex
from model_store.core import StoreCore
from model_store.errors import InvalidTransition, StyleNotFound, VersionNotFound
from model_store.ids import validate_style_id
from model_store.records import BlobInfo, Status, StyleRecord, VersionInfo, utcnow


class VersionsMixin(StoreCore):
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

        Args:
            style_id: the style.
            weights: a safetensors file.
            metadata: what loading needs (architecture, training params), JSON.
            metrics: held-out losses, training time, device, JSON.
            keep_versions: keep only this many newest versions (the new one included)
                in the manifest; the weights of the dropped ones become unreferenced and
                :meth:`gc` deletes them. None keeps every version.

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
        name = f"weights/{sha}.safetensors"
        self._put_own_blob(start, name, weights)
        self._stage("weights-written")
        created = utcnow()

        def add_version(cur: StyleRecord) -> StyleRecord:
            if cur.incarnation != start.incarnation:
                raise StyleNotFound(sid)  # deleted and re-created: not our style any more
            self._check_publishable(cur)
            number = max((v.version for v in cur.versions), default=0) + 1
            version = VersionInfo(
                number, sha, len(weights), created, dict(metadata or {}), dict(metrics or {}), name
            )
            versions = (*cur.versions, version)
            if keep_versions is not None:
                versions = versions[-keep_versions:]  # oldest first: drop from the front
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

        rec = self._mutate(sid, add_version)
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
            ChecksumMismatch: the stored bytes differ from what was published.
            CorruptRecord: the manifest is damaged or the weights file is missing.
        """
        rec = self.get(style_id)
        info = rec.version_info(version)
        if info is None:
            raise VersionNotFound(rec.id, version)
        blob = BlobInfo(info.name, info.sha256, info.size, "application/octet-stream")
        return self._read_verified(rec, blob, version=info.version)

    def _check_publishable(self, rec: StyleRecord) -> None:
        # Ready and failed styles still accept a publish: a duplicate or retried job
        # finishing late produces a good version. Only a cancel is final.
        if rec.status is Status.CANCELED:
            raise InvalidTransition(rec.id, rec.status, Status.READY)
