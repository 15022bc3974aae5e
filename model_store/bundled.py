"""Styles installed from files shipped with the software (the demo styles).

A *bundle* is a folder whose ``manifest.json`` lists styles, each with its style image,
preview and generator files and their sha256, its training params and metrics
(``demo_styles/`` in the repository). :func:`install_bundled` puts one into the store:

* **atomically**: the files are written first, then one create-only manifest write makes
  the style ``ready`` with version 1. A crash (a full disk) at any point leaves either no
  style or the whole one; the files of a crashed install are orphans that ``gc`` removes;
* **idempotently**: a style already installed is left alone, and concurrent installers
  (several API processes or hosts starting at once) make one version: the create-only
  write, or the compare-and-swap below, has one winner;
* it **finishes a half-installed style**: earlier releases created the record first and
  published the weights second, so a start that died between the two left the style
  ``queued`` without a version (and the reconciler then trained it for hours). Such a
  record (no version, no owner, the bundled style image) gets the bundled weights as
  version 1 in one compare-and-swap, whatever status it reached;
* it **remembers deletions**: :meth:`ModelStore.delete` of a bundled style writes a
  tombstone (``styles/<id>/tombstone.json``) *before* it removes the manifest, and
  :func:`install_bundled` refuses an id with a tombstone. The tombstone lives in the store, not
  in Redis, because the store is the source of truth about styles: it survives Redis
  losing its data, is shared by every API process and host that shares the store, and
  is backed up and restored with the records it is about. :func:`forget_deletion`
  removes it (the next start installs the style again); ``gc`` never does.

A record says it was installed so with ``bundled`` (older installs, whose versions carry
``metadata["demo"]``, get it at the next start).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_store.backend import ManifestChanged
from model_store.cas import backoff
from model_store.content import check_safetensors, sha256_hex, sniff_image
from model_store.errors import Conflict, StyleExists, StyleNotFound
from model_store.ids import new_incarnation, validate_style_id
from model_store.records import (
    BlobInfo,
    Status,
    StyleRecord,
    VersionInfo,
    bump,
    record_from_json,
    record_to_json,
    utcnow,
)

if TYPE_CHECKING:
    from model_store.backend import Backend
    from model_store.store import ModelStore

log = logging.getLogger(__name__)

#: Key of a deleted bundled style's tombstone, beside (not inside) its incarnations.
TOMBSTONE = "tombstone.json"


class InstallOutcome(StrEnum):
    """What :func:`install_bundled` did."""

    INSTALLED = "installed"  # the style was missing: now ready, version 1
    FINISHED = "finished"  # a half-installed record got its version 1
    PRESENT = "present"  # already installed (by an earlier start or another process)
    DELETED = "deleted"  # a tombstone: a user deleted it, so it stays deleted
    TAKEN = "taken"  # the id holds another style (an owner's, another image): left alone


@dataclass(frozen=True)
class BundledStyle:
    """One entry of a bundle's ``manifest.json``.

    Attributes:
        id: the style id.
        name: display name.
        folder: the style's folder (``<bundle>/<id>``).
        files: ``role -> (file name, sha256)`` for ``style_image``, ``preview`` and
            ``generator``.
        params: the training params the weights were trained with.
        metrics: the run's metrics.
        entry: the whole manifest entry (painting, source, licence...).
    """

    id: str
    name: str
    folder: Path
    files: Mapping[str, tuple[str, str]]
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    entry: Mapping[str, Any]

    @property
    def style_image_sha256(self) -> str:
        """The sha256 of the bundled style image (what an installed record holds)."""
        return self.files["style_image"][1]

    def read(self, role: str) -> bytes:
        """Return a file's bytes, checked against its sha256.

        Raises:
            OSError: the file cannot be read.
            ValueError: its sha256 differs from the manifest's.
        """
        name, expected = self.files[role]
        data = (self.folder / name).read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ValueError(f"{self.folder / name}: sha256 {actual}, expected {expected}")
        return data


def read_bundle(folder: Path) -> list[BundledStyle]:
    """Return the styles a bundle lists ([] when ``folder`` has no ``manifest.json``).

    Raises:
        OSError: the manifest cannot be read.
        ValueError: it is not a bundle manifest (bad JSON, a missing field, a bad id).
    """
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return []
    styles = []
    try:
        for entry in json.loads(path.read_text())["styles"]:
            style_id = validate_style_id(entry["id"])
            styles.append(
                BundledStyle(
                    id=style_id,
                    name=str(entry["name"]),
                    folder=Path(folder) / style_id,
                    files={
                        "style_image": (entry["style_image"], entry["style_image_sha256"]),
                        "preview": (entry["preview"], entry["preview_sha256"]),
                        "generator": (entry["generator"], entry["sha256"]),
                    },
                    params=dict(entry["train_params"]),
                    metrics=dict(entry["metrics"]),
                    entry=dict(entry),
                )
            )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a bundle manifest ({exc!r})") from exc
    return styles


def awaits_install(rec: StyleRecord, style_image_sha256: str | None = None) -> bool:
    """Whether ``rec`` is a bundled style that :func:`install_bundled` will finish: never train it.

    True for a record without a version that is marked ``bundled``, or that has no owner
    and the bundled style image (``style_image_sha256``, from :func:`read_bundle`): what
    an earlier release's interrupted install left.
    """
    if rec.versions:
        return False
    if rec.bundled:
        return True
    return (
        style_image_sha256 is not None
        and rec.owner is None
        and rec.style_image.sha256 == style_image_sha256
    )


def install_bundled(
    store: ModelStore,
    style_id: str,
    *,
    name: str,
    style_image: bytes,
    preview: bytes,
    weights: bytes,
    params: Mapping[str, Any],
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> InstallOutcome:
    """Install a bundled style as ``ready`` with version 1 (see the module docstring).

    Raises:
        InvalidWeights: ``weights`` are not a safetensors file.
        ValueError, TypeError: something is not JSON.
        CorruptRecord: the id holds a damaged manifest (left alone).
        BackendError: the store failed (a full disk): nothing was installed; call again.
        Conflict: lost the compare-and-swap too many times in a row.
    """
    sid = validate_style_id(style_id)
    check_safetensors(weights)
    json.dumps([dict(params), dict(metadata), dict(metrics)], allow_nan=False)
    image_sha = sha256_hex(style_image)
    backend = store.backend
    for attempt in range(store.max_attempts):
        if is_deleted(store, sid):
            return InstallOutcome.DELETED
        got = backend.read_manifest(sid)
        if got is None:
            rec = _with_version(
                _new_record(sid, name, style_image, params), preview, weights, metadata, metrics
            )
            _put_files(backend, rec, style_image, preview, weights)
            store._stage("bundled-files-written")  # the tests' crash point
            try:
                backend.write_manifest(sid, record_to_json(rec), None)
            except StyleExists:
                continue  # another installer won the create: look at what it made
            return InstallOutcome.INSTALLED
        cur = record_from_json(sid, got[0])
        if cur.owner is not None or cur.style_image.sha256 != image_sha:
            return InstallOutcome.TAKEN
        if cur.versions:
            new = replace(cur, bundled=True)  # installed by an earlier release: mark it
            outcome = InstallOutcome.PRESENT
        else:
            _put_files(backend, cur, None, preview, weights)
            new = _with_version(cur, preview, weights, metadata, metrics)
            outcome = InstallOutcome.FINISHED
        if new == cur:
            return outcome
        try:
            backend.write_manifest(sid, record_to_json(bump(new, cur)), got[1])
        except (ManifestChanged, StyleNotFound):
            backoff(attempt)
            continue  # someone else changed it: look again (a version may be there now)
        return outcome
    raise Conflict(sid, store.max_attempts)


def _blob(prefix: str, data: bytes) -> BlobInfo:
    content_type, ext = sniff_image(data)
    sha = sha256_hex(data)
    return BlobInfo(f"{prefix}-{sha[:16]}.{ext}", sha, len(data), content_type)


def _new_record(sid: str, name: str, style_image: bytes, params: Mapping[str, Any]) -> StyleRecord:
    now = utcnow()
    return StyleRecord(
        id=sid,
        name=name,
        status=Status.QUEUED,  # _with_version makes it ready
        created_at=now,
        updated_at=now,
        incarnation=new_incarnation(),
        style_image=_blob("style", style_image),
        params=dict(params),
    )


def _with_version(
    rec: StyleRecord,
    preview: bytes,
    weights: bytes,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
) -> StyleRecord:
    sha = sha256_hex(weights)
    version = VersionInfo(
        1,
        sha,
        len(weights),
        utcnow(),
        dict(metadata),
        dict(metrics),
        f"weights/{sha}.safetensors",
    )
    return replace(
        rec,
        status=Status.READY,
        versions=(version,),
        current_version=1,
        metrics=dict(metrics),
        error=None,
        progress=None,
        preview=_blob("preview", preview),
        run_preview=None,
        loss_history=(),
        bundled=True,
    )


def _put_files(
    backend: Backend, rec: StyleRecord, style_image: bytes | None, preview: bytes, weights: bytes
) -> None:
    """Write the files ``rec`` will reference (before its manifest, as every write does)."""
    files = [(_blob("preview", preview).name, preview)]
    files.append((f"weights/{sha256_hex(weights)}.safetensors", weights))
    if style_image is not None:
        files.append((_blob("style", style_image).name, style_image))
    for name, data in files:
        backend.put_blob(rec.id, f"{rec.incarnation}/{name}", data)


# --- tombstones --------------------------------------------------------------------------


def write_tombstone(backend: Backend, rec: StyleRecord) -> None:
    """Remember that bundled style ``rec`` was deleted (called before the manifest goes)."""
    note = {"id": rec.id, "name": rec.name, "deleted_at": utcnow().isoformat()}
    backend.put_blob(rec.id, TOMBSTONE, json.dumps(note).encode())


def is_deleted(store: ModelStore, style_id: str) -> bool:
    """Whether a bundled style of this id was deleted (its tombstone is there)."""
    return store.backend.get_blob(validate_style_id(style_id), TOMBSTONE) is not None


def forget_deletion(store: ModelStore, style_id: str) -> bool:
    """Remove the tombstone of ``style_id``; return whether there was one.

    The next :func:`install_bundled` (the next API start) installs the style again.
    """
    sid = validate_style_id(style_id)
    if store.backend.get_blob(sid, TOMBSTONE) is None:
        return False
    store.backend.delete_blobs(sid, [TOMBSTONE])
    log.info("style %s: its deletion is forgotten; the next start installs it again", sid)
    return True
