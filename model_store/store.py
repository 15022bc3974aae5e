"""``ModelStore``: every registry operation, built on a backend's two primitives.

A :class:`~model_store.backend.Backend` offers a per-style manifest with compare-and-swap
and immutable, atomically written blobs. On top of that:

* every change is read-modify-CAS of the manifest, retried with jittered backoff when
  another process won, so concurrent writers never lose each other's updates;
* blobs are named by content hash under a per-incarnation prefix and written *before*
  the manifest that references them: a crash at any point leaves the previous manifest,
  and so the previous version, serving, plus orphans that :meth:`ModelStore.gc` removes;
* every read of weights and images is checked against the sha256 in the manifest.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from model_store.backend import Backend, ManifestChanged
from model_store.bundled import TOMBSTONE, write_tombstone
from model_store.cas import backoff, mutate
from model_store.content import check_safetensors, sha256_hex, sniff_image
from model_store.errors import (
    BackendError,
    ChecksumMismatch,
    Conflict,
    CorruptRecord,
    InvalidTransition,
    PreviewNotFound,
    StyleExists,
    StyleNotFound,
    VersionNotFound,
)
from model_store.gc import DEFAULT_GC_MIN_AGE_S, collect_garbage
from model_store.ids import (
    generate_style_id,
    is_valid_owner,
    is_valid_style_id,
    new_incarnation,
    validate_style_id,
)
from model_store.listing import StatusFilter, paginate
from model_store.records import (
    ACTIVE,
    RESTARTABLE,
    BlobInfo,
    Page,
    Progress,
    Status,
    StyleRecord,
    VersionInfo,
    apply_update,
    bump,
    record_from_json,
    record_to_json,
    utcnow,
)

log = logging.getLogger(__name__)


class ModelStore:
    """Registry of styles: records, images and versioned safetensors weights.

    Safe to use from many threads, processes and hosts at once. It holds no cache, so
    every read sees the latest committed manifest. Build one with
    :func:`model_store.open_store`.
    """

    #: Compare-and-swap attempts before :class:`Conflict` is raised.
    max_attempts = 100

    def __init__(self, backend: Backend, *, scratch_root: Path) -> None:
        """Wrap ``backend``; ``scratch_root`` holds per-style checkpoint directories."""
        self._backend = backend
        self._scratch_root = scratch_root
        #: Test seam: called with a stage name ("weights-written", "delete-canceled")
        #: between steps, so tests can simulate a crash exactly there.
        self._fault_hook: Callable[[str], None] | None = None

    def __repr__(self) -> str:
        return f"ModelStore({self._backend.describe()!r})"

    @property
    def backend(self) -> Backend:
        """The storage backend (for diagnostics and tests)."""
        return self._backend

    # --- records -------------------------------------------------------------------------

    def create(
        self,
        style_image: bytes,
        *,
        name: str,
        params: Mapping[str, Any] | None = None,
        style_id: str | None = None,
        owner: str | None = None,
    ) -> StyleRecord:
        """Register a new style in status ``queued``.

        Args:
            style_image: the original style image, stored as given.
            name: display name.
            params: training parameters (JSON-serialisable).
            style_id: a client-chosen id; by default a random one is generated.
            owner: who created it (an opaque id of 1-64 ``[A-Za-z0-9_-]``), kept for
                the style's life.

        Raises:
            InvalidStyleId: ``style_id`` is not a valid id.
            StyleExists: ``style_id`` is taken.
            ValueError: ``style_image`` is empty or ``owner`` is not a valid id.
        """
        if not style_image:
            raise ValueError("style_image is empty")
        if owner is not None and not is_valid_owner(owner):
            raise ValueError(f"not a valid owner id: {owner!r}")
        chosen = style_id is not None
        sid = validate_style_id(style_id) if chosen else generate_style_id()
        content_type, ext = sniff_image(style_image)
        sha = sha256_hex(style_image)
        image = BlobInfo(f"style-{sha[:16]}.{ext}", sha, len(style_image), content_type)
        for _ in range(8):
            now = utcnow()
            rec = StyleRecord(
                id=sid,
                name=name,
                status=Status.QUEUED,
                created_at=now,
                updated_at=now,
                incarnation=new_incarnation(),
                style_image=image,
                params=dict(params or {}),
                owner=owner,
            )
            data = record_to_json(rec)  # fails before any write if params are not JSON
            key = f"{rec.incarnation}/{image.name}"
            self._backend.put_blob(sid, key, style_image)
            try:
                self._backend.write_manifest(sid, data, None)
            except StyleExists:
                self._backend.delete_blobs(sid, [key])
                if chosen:
                    raise
                sid = generate_style_id()
                continue
            return rec
        raise StyleExists(sid)  # 8 random 60-bit collisions in a row: something is off

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

    def list_styles(
        self,
        *,
        status: StatusFilter = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Return styles newest first (``created_at`` desc, then id desc).

        Styles with a corrupt manifest are skipped (and logged) so one bad record never
        breaks listing. Cost is one manifest read per style: fine for hundreds of styles.

        Args:
            status: keep only this status or these statuses.
            limit: page size, 1-1000.
            cursor: ``next_cursor`` of the previous page.

        Raises:
            InvalidCursor: ``cursor`` was not issued by this method.
        """
        records = []
        for sid, data in self._backend.read_manifests(self._backend.list_style_ids()):
            if data is None:
                continue  # deleted, or mid-create
            try:
                records.append(record_from_json(sid, data))
            except CorruptRecord as exc:
                log.warning("skipping style in listing: %s", exc)
        return paginate(records, status=status, limit=limit, cursor=cursor)

    def update(
        self,
        style_id: str,
        *,
        status: Status | str | None = None,
        progress: Progress | None = None,
        error: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> StyleRecord:
        """Change status, progress, error, metrics or name; return the new record.

        Cheap (one manifest read and one conditional write) so a worker can report
        progress every few seconds. Entering ``queued``/``training`` from another status
        starts a new run: the previous error and progress are cleared.

        Raises:
            StyleNotFound: no such style (e.g. deleted: a worker should stop).
            InvalidTransition: not allowed from the current status; ``.canceled`` tells a
                worker that the style was canceled. Progress is accepted only while
                queued or training.
        """
        sid = validate_style_id(style_id)
        target = None if status is None else Status(status)

        def change(cur: StyleRecord) -> StyleRecord:
            return apply_update(
                cur, status=target, progress=progress, error=error, metrics=metrics, name=name
            )

        return self._mutate(sid, change)

    def cancel(self, style_id: str) -> StyleRecord:
        """Mark a queued or training style ``canceled`` (no-op if already canceled).

        Raises:
            StyleNotFound: no such style.
            InvalidTransition: the style is ready or failed (nothing to cancel).
        """
        return self.update(style_id, status=Status.CANCELED)

    def restart(self, style_id: str, params: Mapping[str, Any]) -> StyleRecord:
        """Start a new training run of a ready, failed or canceled style (a retrain).

        The style becomes ``queued`` with ``params`` as its parameters; the previous
        error and progress are cleared. Its published versions stay, and
        ``current_version`` keeps serving until the new run publishes the next one.
        Only one caller wins a race: the check and the change are one compare-and-swap.

        Leaving ``canceled`` is safe only once no worker of the canceled run is alive
        (it could otherwise go on and publish): the service restarts a style only after
        RQ has recorded its previous job finished, failed, stopped or canceled.

        Raises:
            StyleNotFound: no such style.
            InvalidTransition: the style is queued or training (a run is on).
            ValueError, TypeError: ``params`` are not JSON.
        """
        sid = validate_style_id(style_id)
        params = dict(params)
        json.dumps(params, allow_nan=False)  # refuse before writing

        def start_run(cur: StyleRecord) -> StyleRecord:
            if cur.status not in RESTARTABLE:
                raise InvalidTransition(cur.id, cur.status, Status.QUEUED)
            # Not apply_update: TRANSITIONS keep workers from leaving CANCELED; this may.
            return replace(
                cur,
                status=Status.QUEUED,
                params=params,
                error=None,
                progress=None,
                run_preview=None,
                loss_history=(),
            )

        return self._mutate(sid, start_run)

    def delete(self, style_id: str) -> None:
        """Delete a style with all its versions; a running one is canceled first.

        The cancel is its own committed write, then the manifest is removed (from then
        on the style is gone for every reader), then its files and scratch directory.
        A worker sees the cancel or :class:`StyleNotFound` on its next update or publish.
        A style with a corrupt manifest can still be deleted. Deleting a ``bundled`` style
        leaves a tombstone, so it is not installed again (:mod:`model_store.bundled`).

        Raises:
            StyleNotFound: no such style.
        """
        sid = validate_style_id(style_id)
        incarnation = None
        tombstoned = False
        for attempt in range(self.max_attempts):
            got = self._backend.read_manifest(sid)
            if got is None:
                raise StyleNotFound(sid)
            data, token = got
            try:
                rec: StyleRecord | None = record_from_json(sid, data)
            except CorruptRecord:
                rec = None
            try:
                if rec is not None and rec.bundled and not tombstoned:
                    # Before the manifest goes: a crash in between must not lose the
                    # deletion (the next start would install the style again).
                    write_tombstone(self._backend, rec)
                    tombstoned = True
                if rec is not None and rec.status in ACTIVE:
                    canceled = bump(replace(rec, status=Status.CANCELED), rec)
                    token = self._backend.write_manifest(sid, record_to_json(canceled), token)
                    _call(self._fault_hook, "delete-canceled")
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

    # --- weights and images --------------------------------------------------------------

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
        _call(self._fault_hook, "weights-written")
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

    def style_image(self, style_id: str) -> bytes:
        """Return the original style image (type in ``get(...).style_image``), verified."""
        rec = self.get(style_id)
        return self._read_verified(rec, rec.style_image)

    def set_preview(self, style_id: str, image: bytes) -> StyleRecord:
        """Set the style's picture (PNG, JPEG or WebP bytes), replacing any previous.

        A worker calls :meth:`set_run_preview` instead: its previews replace the style's
        picture only when its run publishes.
        """
        return self._attach_image(style_id, image, "preview")

    def set_run_preview(self, style_id: str, image: bytes) -> StyleRecord:
        """Store the current training run's latest preview (PNG, JPEG or WebP bytes).

        :meth:`publish` makes it the style's picture; a run that is canceled or fails
        leaves the style's picture as it was. A new run starts without one.
        """
        return self._attach_image(style_id, image, "run_preview")

    def preview(self, style_id: str) -> bytes:
        """Return the style's picture (the preview of the serving version), verified.

        Raises:
            PreviewNotFound: none was set.
        """
        rec = self.get(style_id)
        if rec.preview is None:
            raise PreviewNotFound(rec.id)
        return self._read_verified(rec, rec.preview)

    def run_preview(self, style_id: str) -> bytes:
        """Return the latest preview of the current or last unpublished run, verified.

        Raises:
            PreviewNotFound: the run has made none (or it was published).
        """
        rec = self.get(style_id)
        if rec.run_preview is None:
            raise PreviewNotFound(rec.id)
        return self._read_verified(rec, rec.run_preview)

    def scratch_dir(self, style_id: str) -> Path:
        """Return (creating it) a local directory for the style's training checkpoints.

        For the file backend it lives on the store volume (``<root>/scratch/<id>``) so a
        job retried on another host of the same volume can resume; for S3 it is local to
        the host (``scratch_root``). ``delete`` removes it.
        """
        path = self._scratch_root / validate_style_id(style_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- maintenance ---------------------------------------------------------------------

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

    # --- helpers -------------------------------------------------------------------------

    def _attach_image(self, style_id: str, image: bytes, field: str) -> StyleRecord:
        if not image:
            raise ValueError("preview image is empty")
        start = self.get(style_id)
        content_type, ext = sniff_image(image)
        sha = sha256_hex(image)
        blob = BlobInfo(f"preview-{sha[:16]}.{ext}", sha, len(image), content_type)
        self._put_own_blob(start, blob.name, bytes(image))

        def attach(cur: StyleRecord) -> StyleRecord:
            if cur.incarnation != start.incarnation:
                raise StyleNotFound(start.id)
            return replace(cur, **{field: blob})

        return self._mutate(start.id, attach)

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

    def _check_publishable(self, rec: StyleRecord) -> None:
        # Ready and failed styles still accept a publish: a duplicate or retried job
        # finishing late produces a good version. Only a cancel is final.
        if rec.status is Status.CANCELED:
            raise InvalidTransition(rec.id, rec.status, Status.READY)

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


def _call(hook: Callable[[str], None] | None, stage: str) -> None:
    if hook is not None:
        hook(stage)
