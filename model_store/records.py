"""Style records, their JSON manifest form, and the status lifecycle.

A style's manifest is the single JSON document that says what the style is; every other
stored file (style image, preview, weights) is immutable and reached only through it.
Records are frozen: a change is a new record (``dataclasses.replace``) written back with a
compare-and-swap, never an in-place edit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from model_store.errors import CorruptRecord, InvalidTransition
from model_store.ids import (
    is_valid_blob_name,
    is_valid_incarnation,
    is_valid_owner,
    is_valid_style_id,
)
from model_store.lineage import DeltaInfo, Dependent

#: Bumped when the manifest layout changes incompatibly; older readers then refuse the
#: record as corrupt instead of misreading it.
SCHEMA_VERSION = 1


class Status(StrEnum):
    """Lifecycle of a style; see :data:`TRANSITIONS`."""

    QUEUED = "queued"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"
    CANCELED = "canceled"


#: Allowed ``update(status=...)`` moves. READY is reached only through ``publish``;
#: CANCELED is terminal for these updates, so a stale worker can never revive it; only
#: :meth:`ModelStore.restart` (a new run, started by the service once the old job is
#: recorded stopped) or ``delete`` leave it.
#: A retrain (READY -> QUEUED/TRAINING) keeps ``current_version`` serving meanwhile.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.QUEUED, Status.TRAINING, Status.FAILED, Status.CANCELED}),
    Status.TRAINING: frozenset({Status.QUEUED, Status.TRAINING, Status.FAILED, Status.CANCELED}),
    Status.READY: frozenset({Status.READY, Status.QUEUED, Status.TRAINING}),
    Status.FAILED: frozenset({Status.FAILED, Status.QUEUED, Status.TRAINING}),
    Status.CANCELED: frozenset({Status.CANCELED}),
}

#: Statuses a worker may publish weights from.
PUBLISHABLE: frozenset[Status] = frozenset({Status.QUEUED, Status.TRAINING})

#: Statuses in which a worker may be running; ``delete`` cancels these first.
ACTIVE: frozenset[Status] = frozenset({Status.QUEUED, Status.TRAINING})

#: Statuses from which a new training run may start (:meth:`ModelStore.restart`).
RESTARTABLE: frozenset[Status] = frozenset({Status.READY, Status.FAILED, Status.CANCELED})


#: Points kept in ``StyleRecord.loss_history``; beyond, every other older point goes.
LOSS_HISTORY_POINTS = 200


def _with_loss(
    history: tuple[tuple[int, float], ...], progress: Progress
) -> tuple[tuple[int, float], ...]:
    """Return ``history`` with ``progress``'s loss appended, thinned to the limit."""
    if progress.loss is None or (history and history[-1][0] == progress.iteration):
        return history
    points = (*history, (progress.iteration, progress.loss))
    if len(points) > LOSS_HISTORY_POINTS:
        # Keep the curve's shape over the whole run: halve the resolution, keep the ends.
        points = (*points[:-1:2], points[-1])
    return points


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Progress:
    """Training progress, written by the worker every few seconds."""

    iteration: int
    total: int
    eta_s: float | None = None
    #: Total training loss at ``iteration`` (for live loss curves); None if unknown.
    loss: float | None = None

    @property
    def fraction(self) -> float:
        """Completed share in ``[0, 1]``."""
        return min(1.0, self.iteration / self.total) if self.total > 0 else 0.0


@dataclass(frozen=True)
class BlobInfo:
    """An immutable stored file: its name within the style, checksum, size and type."""

    name: str
    sha256: str
    size: int
    content_type: str


@dataclass(frozen=True)
class VersionInfo:
    """One published set of weights of a style.

    Attributes:
        version: 1-based, increasing per style; never reused.
        sha256: hex digest of the safetensors bytes, checked on every load.
        size: length of the safetensors bytes (what a read returns; see ``stored_size``).
        created_at: when the version was published.
        metadata: what the worker needs to rebuild the generator (architecture, params).
        metrics: held-out losses, training time, device, ...
        name: stored file name (backend-internal, relative to the style).
        exports: the version's weights converted to other formats, by kind (``onnx``,
            ``onnx-float16``): made on first request and kept while the version is
            (:mod:`model_store.exports`).
        delta: set when ``name`` holds only the tensors that differ from another
            style's version (:mod:`model_store.deltas`); None: ``name`` is the full file.
    """

    version: int
    sha256: str
    size: int
    created_at: datetime
    metadata: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    exports: Mapping[str, BlobInfo] = field(default_factory=dict)
    delta: DeltaInfo | None = None

    @property
    def stored_size(self) -> int:
        """Bytes the version's weights take in the store (a delta's, or the full file's)."""
        return self.size if self.delta is None else self.delta.size


@dataclass(frozen=True)
class StyleRecord:
    """Everything known about one style; the content of its manifest.

    ``current_version`` is what serves. It survives a retrain (status QUEUED/TRAINING or a
    FAILED retrain), so the service should serve whenever it is set (see ``servable``).
    """

    id: str
    name: str
    status: Status
    created_at: datetime
    updated_at: datetime
    incarnation: str
    style_image: BlobInfo
    params: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress | None = None
    error: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    current_version: int | None = None
    versions: tuple[VersionInfo, ...] = ()
    #: The style's picture: the preview of the version that serves (a run's preview
    #: becomes it only when that run publishes).
    preview: BlobInfo | None = None
    revision: int = 1
    #: The latest preview of the current (or last, unpublished) training run.
    run_preview: BlobInfo | None = None
    #: ``(iteration, total loss)`` of the current or last run's progress reports, thinned
    #: to at most :data:`LOSS_HISTORY_POINTS` (a loss curve survives a page reload).
    loss_history: tuple[tuple[int, float], ...] = ()
    #: Who created the style: an opaque id of the API key (never the key), set by the
    #: service; None for styles created without a key (demo styles, an open API).
    owner: str | None = None
    #: Installed from files shipped with the software (a demo style, see
    #: :mod:`model_store.bundled`): deleting it leaves a tombstone, so the next start
    #: does not install it again.
    bundled: bool = False
    #: Styles whose versions are stored as deltas over a version of this one (marked
    #: before their manifest is written): this style cannot be deleted while they are.
    dependents: tuple[Dependent, ...] = ()

    @property
    def servable(self) -> bool:
        """Whether a published version exists to serve."""
        return self.current_version is not None

    def version_info(self, version: int | None = None) -> VersionInfo | None:
        """Return the given version (default: the current one), or None if absent."""
        wanted = self.current_version if version is None else version
        return next((v for v in self.versions if v.version == wanted), None)

    def blob_names(self) -> set[str]:
        """Return every stored file name this record references."""
        names = {self.style_image.name, *(v.name for v in self.versions)}
        names.update(b.name for v in self.versions for b in v.exports.values())
        names.update(b.name for b in (self.preview, self.run_preview) if b is not None)
        return names


@dataclass(frozen=True)
class Page:
    """One page of :meth:`ModelStore.list_styles`; pass ``next_cursor`` for the next."""

    items: tuple[StyleRecord, ...]
    next_cursor: str | None = None


# --- changes -----------------------------------------------------------------------------


def apply_update(
    cur: StyleRecord,
    *,
    status: Status | None = None,
    progress: Progress | None = None,
    error: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> StyleRecord:
    """Return ``cur`` with the requested changes, enforcing :data:`TRANSITIONS`.

    Entering QUEUED/TRAINING from another status starts a new run, clearing the previous
    error, progress, run preview and loss history; leaving them drops the ETA. Progress is
    accepted only while queued or training, and never goes backwards within a run (a
    resumed retry reports from its checkpoint: those reports are dropped until it passes
    the recorded one).

    Raises:
        InvalidTransition: the move (or a progress report) is not allowed; its
            ``.canceled`` is true when the style was canceled.
    """
    new_status = cur.status if status is None else status
    if new_status not in TRANSITIONS[cur.status]:
        raise InvalidTransition(cur.id, cur.status, new_status)
    if progress is not None and new_status not in ACTIVE:
        raise InvalidTransition(cur.id, cur.status, "progress")
    rec = cur
    if new_status is not cur.status:
        rec = replace(rec, status=new_status)
        if new_status in ACTIVE and cur.status not in ACTIVE:
            rec = replace(rec, error=None, progress=None, run_preview=None, loss_history=())
        elif new_status not in ACTIVE and rec.progress is not None:
            rec = replace(rec, progress=replace(rec.progress, eta_s=None))  # no run, no ETA
    if progress is not None and not _goes_back(rec.progress, progress):
        rec = replace(rec, progress=progress, loss_history=_with_loss(rec.loss_history, progress))
    if error is not None:
        rec = replace(rec, error=error)
    if metrics is not None:
        rec = replace(rec, metrics=dict(metrics))
    if name is not None:
        rec = replace(rec, name=name)
    return rec


def _goes_back(recorded: Progress | None, new: Progress) -> bool:
    """Whether ``new`` is behind what this run already reported.

    A retried attempt resumes from its last checkpoint, behind the iteration the
    previous attempt reported; such reports are dropped until it catches up, so progress
    (and the loss curve drawn from it) never goes backwards within a run.
    """
    return (
        recorded is not None and recorded.total == new.total and new.iteration < recorded.iteration
    )


def bump(new: StyleRecord, cur: StyleRecord) -> StyleRecord:
    """Stamp ``new`` as the successor of ``cur``: next revision, fresh ``updated_at``."""
    return replace(new, revision=cur.revision + 1, updated_at=max(utcnow(), cur.updated_at))


# --- JSON --------------------------------------------------------------------------------


def _blob_to_json(b: BlobInfo) -> dict[str, Any]:
    return {"name": b.name, "sha256": b.sha256, "size": b.size, "content_type": b.content_type}


def _version_to_json(v: VersionInfo) -> dict[str, Any]:
    return {
        "version": v.version,
        "name": v.name,
        "sha256": v.sha256,
        "size": v.size,
        "created_at": v.created_at.isoformat(),
        "metadata": dict(v.metadata),
        "metrics": dict(v.metrics),
        "exports": {kind: _blob_to_json(b) for kind, b in sorted(v.exports.items())},
        "delta": None if v.delta is None else v.delta.to_json(),
    }


def record_to_json(rec: StyleRecord) -> bytes:
    """Serialize a record to manifest bytes (UTF-8 JSON)."""
    doc: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": rec.id,
        "name": rec.name,
        "status": rec.status.value,
        "created_at": rec.created_at.isoformat(),
        "updated_at": rec.updated_at.isoformat(),
        "incarnation": rec.incarnation,
        "revision": rec.revision,
        "params": dict(rec.params),
        "progress": None
        if rec.progress is None
        else {
            "iteration": rec.progress.iteration,
            "total": rec.progress.total,
            "eta_s": rec.progress.eta_s,
            "loss": rec.progress.loss,
        },
        "error": rec.error,
        "metrics": dict(rec.metrics),
        "current_version": rec.current_version,
        "versions": [_version_to_json(v) for v in rec.versions],
        "style_image": _blob_to_json(rec.style_image),
        "preview": None if rec.preview is None else _blob_to_json(rec.preview),
        "run_preview": None if rec.run_preview is None else _blob_to_json(rec.run_preview),
        "loss_history": [list(point) for point in rec.loss_history],
        "owner": rec.owner,
        "bundled": rec.bundled,
        "dependents": [d.to_json() for d in rec.dependents],
    }
    # allow_nan=False: NaN/Infinity are not JSON and other readers would choke on them.
    return json.dumps(doc, allow_nan=False, sort_keys=True, indent=1).encode()


def _time(value: Any) -> datetime:
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError("naive timestamp")
    return t


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _blob_from_json(d: Any) -> BlobInfo:
    d = _dict(d)
    blob = BlobInfo(str(d["name"]), str(d["sha256"]), int(d["size"]), str(d["content_type"]))
    if not is_valid_blob_name(blob.name):
        raise ValueError(f"bad file name {blob.name!r}")
    return blob


def _version_from_json(d: Any) -> VersionInfo:
    d = _dict(d)
    v = VersionInfo(
        version=int(d["version"]),
        name=str(d["name"]),
        sha256=str(d["sha256"]),
        size=int(d["size"]),
        created_at=_time(d["created_at"]),
        metadata=_dict(d["metadata"]),
        metrics=_dict(d["metrics"]),
        # Absent from manifests written before exports.
        exports={str(k): _blob_from_json(b) for k, b in _dict(d.get("exports") or {}).items()},
        # Absent from manifests written before deltas: the file is the full weights.
        delta=None if d.get("delta") is None else DeltaInfo.from_json(d["delta"]),
    )
    if not is_valid_blob_name(v.name) or not v.name.startswith("weights/"):
        raise ValueError(f"bad weights file name {v.name!r}")
    if (v.delta is not None) != v.name.endswith(".delta"):
        raise ValueError(f"weights file {v.name!r} does not match its delta record")
    if any(not b.name.startswith("exports/") for b in v.exports.values()):
        raise ValueError("bad export file name")
    return v


def _owner(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not is_valid_owner(value):
        raise ValueError(f"bad owner {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, not {value!r}")
    return value


def record_from_json(style_id: str, data: bytes) -> StyleRecord:
    """Parse manifest bytes of ``style_id``.

    Raises:
        CorruptRecord: if the bytes are not a well-formed manifest of that style, or were
            written by a newer, incompatible schema.
    """
    try:
        d = _dict(json.loads(data))
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema {d.get('schema')!r}")
        p = d["progress"]
        rec = StyleRecord(
            id=str(d["id"]),
            name=str(d["name"]),
            status=Status(d["status"]),
            created_at=_time(d["created_at"]),
            updated_at=_time(d["updated_at"]),
            incarnation=str(d["incarnation"]),
            revision=int(d["revision"]),
            params=_dict(d["params"]),
            progress=None
            if p is None
            else Progress(
                int(p["iteration"]),
                int(p["total"]),
                None if p["eta_s"] is None else float(p["eta_s"]),
                None if p.get("loss") is None else float(p["loss"]),
            ),
            error=None if d["error"] is None else str(d["error"]),
            metrics=_dict(d["metrics"]),
            current_version=None if d["current_version"] is None else int(d["current_version"]),
            versions=tuple(_version_from_json(v) for v in d["versions"]),
            style_image=_blob_from_json(d["style_image"]),
            preview=None if d["preview"] is None else _blob_from_json(d["preview"]),
            # Absent from manifests written before runs had their own preview.
            run_preview=None if d.get("run_preview") is None else _blob_from_json(d["run_preview"]),
            loss_history=tuple((int(i), float(v)) for i, v in d.get("loss_history") or ()),
            owner=_owner(d.get("owner")),  # absent from manifests written before owners
            bundled=_flag(d.get("bundled", False)),  # likewise
            dependents=tuple(Dependent.from_json(x) for x in d.get("dependents") or ()),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too.
        raise CorruptRecord(style_id, f"bad manifest: {exc}") from exc
    if rec.id != style_id or not is_valid_style_id(rec.id):
        raise CorruptRecord(style_id, f"manifest names style {rec.id!r}")
    if not is_valid_incarnation(rec.incarnation):
        raise CorruptRecord(style_id, "bad incarnation")
    if rec.current_version is not None and rec.version_info() is None:
        raise CorruptRecord(style_id, f"current version {rec.current_version} is not listed")
    return rec
