"""Exports of a version's weights to other formats (ONNX), kept beside the weights.

An export is derived data: made from one version's weights on first request, stored
like the weights (an immutable file named by its sha256 under ``exports/``, written
before the manifest that references it) and listed in that version's ``exports`` by
kind (``onnx``, ``onnx-float16``). So there is at most one export of a kind per style
version, every read is checked against its sha256, it lives exactly as long as its
version (a version dropped by ``keep_versions`` takes its exports with it: ``gc``
removes the files no manifest references), and every API process and host shares it.

The store does not make exports (it holds no model code): the caller converts, then
:meth:`ExportsMixin.put_export` records the bytes. Two processes converting at once
both store; the second manifest change keeps the first entry (the first wins), and the
loser's file is an orphan for ``gc``.
"""

from __future__ import annotations

import re
from dataclasses import replace

from model_store.content import sha256_hex
from model_store.core import StoreCore
from model_store.errors import StyleNotFound, VersionNotFound
from model_store.records import BlobInfo, StyleRecord

#: Kinds of export a version may hold (its key in ``VersionInfo.exports``).
EXPORT_KIND_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: File suffix and content type per family of kinds (the part before the first ``-``).
_FORMATS = {"onnx": ("onnx", "application/octet-stream")}


def _check_kind(kind: str) -> tuple[str, str]:
    family = kind.split("-", 1)[0]
    if EXPORT_KIND_RE.fullmatch(kind) is None or family not in _FORMATS:
        raise ValueError(f"unknown export kind {kind!r} (formats: {sorted(_FORMATS)})")
    return _FORMATS[family]


class ExportsMixin(StoreCore):
    """Storing and verified reading of a version's exports."""

    def open_export(self, style_id: str, version: int, kind: str) -> tuple[bytes, BlobInfo] | None:
        """Return a version's stored export of ``kind`` (sha256-verified), or None if none.

        Raises:
            StyleNotFound: no such style.
            VersionNotFound: no such version.
            CorruptRecord: the stored export is missing or damaged.
            ValueError: ``kind`` is not a known export kind.
        """
        _check_kind(kind)
        rec = self.get(style_id)
        info = rec.version_info(version)
        if info is None:
            raise VersionNotFound(rec.id, version)
        blob = info.exports.get(kind)
        if blob is None:
            return None
        return self._read_verified(rec, blob), blob

    def put_export(self, style_id: str, version: int, kind: str, data: bytes) -> BlobInfo:
        """Store ``data`` as the export of ``kind`` of ``version``; return what is recorded.

        When another writer recorded one first, that one is kept and returned.

        Raises:
            StyleNotFound: no such style (or deleted and re-created meanwhile).
            VersionNotFound: no such version (or it left the manifest meanwhile).
            ValueError: ``kind`` is not a known export kind, or ``data`` is empty.
        """
        suffix, content_type = _check_kind(kind)
        if not data:
            raise ValueError("an export is not empty")
        data = bytes(data)
        start = self.get(style_id)
        if start.version_info(version) is None:
            raise VersionNotFound(start.id, version)
        sha = sha256_hex(data)
        blob = BlobInfo(f"exports/{sha}.{suffix}", sha, len(data), content_type)
        self._put_own_blob(start, blob.name, data)

        def record(cur: StyleRecord) -> StyleRecord:
            if cur.incarnation != start.incarnation:
                raise StyleNotFound(start.id)
            if cur.version_info(version) is None:
                raise VersionNotFound(cur.id, version)
            versions = tuple(
                replace(v, exports={**v.exports, kind: v.exports.get(kind, blob)})
                if v.version == version
                else v
                for v in cur.versions
            )
            return replace(cur, versions=versions)

        rec = self._mutate(start.id, record)
        info = rec.version_info(version)
        assert info is not None  # record() checked it
        return info.exports[kind]
