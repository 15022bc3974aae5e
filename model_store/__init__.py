"""Style registry shared by the service and the worker.

Open one with :func:`open_store` from the ``STYLIZE_MODEL_STORE`` URL::

    store = open_store("file:///data/models")          # local / shared volume
    store = open_store("s3://bucket/stylize/models")   # S3, MinIO, Ceph

Readers (the service) use ``get``, ``list_styles``, ``open_weights``; the worker uses
``update`` for status/progress, ``scratch_dir`` for checkpoints and ``publish``. A worker
should stop training when ``update``/``publish`` raise :class:`StyleNotFound` or an
:class:`InvalidTransition` whose ``.canceled`` is true.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from model_store.bundled import (
    BundledStyle,
    InstallOutcome,
    awaits_install,
    forget_deletion,
    install_bundled,
    is_deleted,
    read_bundle,
)
from model_store.errors import (
    BackendError,
    ChecksumMismatch,
    Conflict,
    CorruptRecord,
    HasDependents,
    InvalidCursor,
    InvalidStoreURL,
    InvalidStyleId,
    InvalidTransition,
    InvalidWeights,
    ModelStoreError,
    PreviewNotFound,
    StyleExists,
    StyleNotFound,
    VersionNotFound,
)
from model_store.gc import DEFAULT_GC_MIN_AGE_S
from model_store.ids import generate_style_id, is_valid_style_id, validate_style_id
from model_store.records import (
    RESTARTABLE,
    BlobInfo,
    Page,
    Progress,
    Status,
    StyleRecord,
    VersionInfo,
)
from model_store.store import ModelStore

__all__ = [
    "DEFAULT_GC_MIN_AGE_S",
    "RESTARTABLE",
    "BackendError",
    "BlobInfo",
    "BundledStyle",
    "ChecksumMismatch",
    "Conflict",
    "CorruptRecord",
    "HasDependents",
    "InstallOutcome",
    "InvalidCursor",
    "InvalidStoreURL",
    "InvalidStyleId",
    "InvalidTransition",
    "InvalidWeights",
    "ModelStore",
    "ModelStoreError",
    "Page",
    "PreviewNotFound",
    "Progress",
    "Status",
    "StyleExists",
    "StyleNotFound",
    "StyleRecord",
    "VersionInfo",
    "VersionNotFound",
    "awaits_install",
    "forget_deletion",
    "generate_style_id",
    "install_bundled",
    "is_deleted",
    "is_valid_style_id",
    "open_store",
    "read_bundle",
    "validate_style_id",
]


def open_store(url: str, *, scratch_root: str | Path | None = None) -> ModelStore:
    """Open the model store named by ``url``.

    Args:
        url: ``file:///abs/dir`` (a bare path also works) or ``s3://bucket[/prefix]``.
            S3 accepts ``?addressing_style=path`` for servers that need path-style
            requests; endpoint and credentials come from the AWS environment variables.
        scratch_root: local directory for training checkpoints (``scratch_dir``).
            Default: ``<root>/scratch`` on the file store's volume (so a retried job
            can resume on another container); for S3, ``<tmp>/stylize-scratch`` on
            this host.

    Raises:
        InvalidStoreURL: unknown scheme, or a malformed URL.
        BackendError: the storage cannot be reached or created.
    """
    parts = urlsplit(url)
    scratch = None if scratch_root is None else Path(scratch_root)
    if parts.scheme in ("", "file"):
        if parts.netloc not in ("", "localhost") or parts.query or not parts.path:
            raise InvalidStoreURL(url, "expected file:///absolute/path")
        from model_store.file_backend import FileBackend

        root = Path(unquote(parts.path)).absolute()
        return ModelStore(FileBackend(root), scratch_root=scratch or root / "scratch")
    if parts.scheme == "s3":
        query = parse_qs(parts.query)
        unknown = set(query) - {"addressing_style"}
        style = query.get("addressing_style", ["auto"])[-1]
        if not parts.netloc or unknown or style not in ("auto", "path", "virtual"):
            raise InvalidStoreURL(url, "expected s3://bucket/prefix[?addressing_style=path]")
        # Imported lazily so file-only deployments need not import boto3.
        from model_store.s3_backend import S3Backend

        backend = S3Backend(parts.netloc, unquote(parts.path), addressing_style=style)
        default_scratch = Path(tempfile.gettempdir()) / "stylize-scratch"
        return ModelStore(backend, scratch_root=scratch or default_scratch)
    raise InvalidStoreURL(url, f"unknown scheme {parts.scheme!r}")
