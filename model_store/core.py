"""``StoreCore``: what every part of :class:`~model_store.store.ModelStore` builds on.

The backend and scratch root, reading a record, the compare-and-swap change of a
manifest, and writing and verified reading of a style's own files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from model_store.backend import Backend
from model_store.cas import mutate
from model_store.content import sha256_hex
from model_store.errors import BackendError, ChecksumMismatch, CorruptRecord, StyleNotFound
from model_store.ids import validate_style_id
from model_store.records import BlobInfo, StyleRecord, record_from_json


class StoreCore:
    """The state and primitives the store's parts share; see :class:`ModelStore`."""

    #: Compare-and-swap attempts before :class:`Conflict` is raised.
    max_attempts = 100

    def __init__(self, backend: Backend, *, scratch_root: Path) -> None:
        """Wrap ``backend``; ``scratch_root`` holds per-style checkpoint directories."""
        self._backend = backend
        self._scratch_root = scratch_root
        #: Test seam: called with a stage name ("delta-written", "weights-written",
        #: "delete-canceled") between steps, so tests can simulate a crash exactly there.
        self._fault_hook: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        return f"ModelStore({self._backend.describe()!r})"

    @property
    def backend(self) -> Backend:
        """The storage backend (for diagnostics and tests)."""
        return self._backend

    def get(self, style_id: str) -> StyleRecord:
        """Return the style's record.

        Raises:
            StyleNotFound: no such style.
            CorruptRecord: its manifest is damaged.
        """
        sid = validate_style_id(style_id)
        got = self._backend.read_manifest(sid)
        if got is None:
            raise StyleNotFound(sid)
        return record_from_json(sid, got[0])

    # --- helpers -------------------------------------------------------------------------

    def _stage(self, stage: str) -> None:
        if self._fault_hook is not None:
            self._fault_hook(stage)

    def _mutate(self, sid: str, change: Callable[[StyleRecord], StyleRecord]) -> StyleRecord:
        return mutate(self._backend, sid, change, max_attempts=self.max_attempts)

    def _put_own_blob(self, rec: StyleRecord, name: str, data: bytes) -> None:
        try:
            self._backend.put_blob(rec.id, f"{rec.incarnation}/{name}", data)
        except BackendError:
            # A concurrent delete removes the directory under a file write; report that
            # as the style being gone rather than as a storage failure.
            again = self._backend.read_manifest(rec.id)
            if again is None or record_from_json(rec.id, again[0]).incarnation != rec.incarnation:
                raise StyleNotFound(rec.id) from None
            raise

    def _read_verified(self, rec: StyleRecord, blob: BlobInfo, version: int = 0) -> bytes:
        data = self._backend.get_blob(rec.id, f"{rec.incarnation}/{blob.name}")
        if data is None:
            # Files vanish only when the style is deleted; anything else is damage.
            again = self._backend.read_manifest(rec.id)
            if again is None or record_from_json(rec.id, again[0]).incarnation != rec.incarnation:
                raise StyleNotFound(rec.id)
            raise CorruptRecord(rec.id, f"stored file {blob.name} is missing")
        actual = sha256_hex(data)
        if actual != blob.sha256 or len(data) != blob.size:
            if version:
                raise ChecksumMismatch(rec.id, version, blob.sha256, actual)
            raise CorruptRecord(rec.id, f"{blob.name} has sha256 {actual}, not {blob.sha256}")
        return data
