"""Which weights serve a request: style id (+ version) → a servable, immutable target.

The store holds no cache and may be remote (S3), so records are reused for
``ttl_s`` seconds: a new version starts serving at most that long after it is
published, and the hot path does not pay a manifest read per image. Deleting a style
through this service invalidates at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio.to_thread

from model_store import ModelStore, StyleRecord, VersionNotFound
from service.errors import StyleNotReady


@dataclass(frozen=True)
class ModelKey:
    """Identifies one set of weights: a version of one incarnation of a style."""

    style_id: str
    incarnation: str
    version: int


@dataclass(frozen=True)
class ServeTarget:
    """A resolved, servable style version."""

    key: ModelKey
    sha256: str

    @property
    def style_id(self) -> str:
        """The style's id."""
        return self.key.style_id

    @property
    def version(self) -> int:
        """The version number that serves."""
        return self.key.version


class StyleResolver:
    """Resolves style ids against the store, with a short-lived record cache."""

    def __init__(self, store: ModelStore, *, ttl_s: float) -> None:
        """Resolve against ``store``, reusing a record for ``ttl_s`` seconds."""
        self._store = store
        self._ttl_s = ttl_s
        self._records: dict[str, tuple[float, StyleRecord]] = {}

    async def record(self, style_id: str) -> StyleRecord:
        """Return the style's record, from the cache if fresh.

        Raises:
            model_store.StyleNotFound, model_store.InvalidStyleId: no such style.
        """
        now = time.monotonic()
        cached = self._records.get(style_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        rec = await anyio.to_thread.run_sync(self._store.get, style_id)
        if self._ttl_s > 0:
            if len(self._records) > 10_000:  # bound memory against id scans
                self._records.clear()
            self._records[style_id] = (now + self._ttl_s, rec)
        return rec

    async def resolve(self, style_id: str, version: int | None = None) -> ServeTarget:
        """Return what serves ``style_id`` (at ``version``, default the current one).

        Raises:
            model_store.StyleNotFound: no such style.
            model_store.VersionNotFound: the style has no such version.
            StyleNotReady: nothing is published yet (the error carries the status).
        """
        rec = await self.record(style_id)
        if version is None and not rec.servable:
            raise StyleNotReady(
                f"style {rec.id!r} is {rec.status.value} and has no published version yet",
                style_id=rec.id,
                status=rec.status.value,
                progress=None if rec.progress is None else round(rec.progress.fraction, 4),
                eta_s=None if rec.progress is None else rec.progress.eta_s,
            )
        info = rec.version_info(version)
        if info is None:
            raise VersionNotFound(rec.id, version)
        return ServeTarget(ModelKey(rec.id, rec.incarnation, info.version), info.sha256)

    def invalidate(self, style_id: str) -> None:
        """Forget the cached record of ``style_id``."""
        self._records.pop(style_id, None)
