"""``ModelStore``: every registry operation, built on a backend's two primitives.

A :class:`~model_store.backend.Backend` offers a per-style manifest with compare-and-swap
and immutable, atomically written blobs. On top of that:

* every change is read-modify-CAS of the manifest, retried with jittered backoff when
  another process won, so concurrent writers never lose each other's updates;
* blobs are named by content hash under a per-incarnation prefix and written *before*
  the manifest that references them: a crash at any point leaves the previous manifest,
  and so the previous version, serving, plus orphans that :meth:`ModelStore.gc` removes;
* every read of weights and images is checked against the sha256 in the manifest.

The class is composed of one module per concept: :mod:`model_store.core` (backend,
reads, the CAS change, verified files), this module (records: create, list, update,
cancel, restart), :mod:`model_store.versions` (publish, score, weights), :mod:`model_store.deltas`
(versions stored as what differs from another style's, and the dependents that makes),
:mod:`model_store.exports` (ONNX exports of a version), :mod:`model_store.images` (style
image and previews), :mod:`model_store.deletion`
(delete, tombstones) and :mod:`model_store.maintenance` (scratch folders, gc).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from model_store.content import sha256_hex, sniff_image
from model_store.deletion import DeletionMixin
from model_store.errors import CorruptRecord, InvalidTransition, StyleExists
from model_store.exports import ExportsMixin
from model_store.ids import generate_style_id, is_valid_owner, new_incarnation, validate_style_id
from model_store.images import ImagesMixin
from model_store.listing import StatusFilter, paginate
from model_store.maintenance import MaintenanceMixin
from model_store.records import (
    RESTARTABLE,
    BlobInfo,
    Page,
    Progress,
    Status,
    StyleRecord,
    apply_update,
    record_from_json,
    record_to_json,
    utcnow,
)
from model_store.versions import VersionsMixin

log = logging.getLogger(__name__)


class ModelStore(VersionsMixin, ExportsMixin, ImagesMixin, DeletionMixin, MaintenanceMixin):
    """Registry of styles: records, images and versioned safetensors weights.

    Safe to use from many threads, processes and hosts at once. It holds no cache, so
    every read sees the latest committed manifest. Build one with
    :func:`model_store.open_store`.
    """

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
