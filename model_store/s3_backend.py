"""S3-compatible backend (``s3://bucket/prefix``) for stores shared by many hosts.

Layout under ``<prefix>/``, mirroring the file backend::

    styles/<id>/manifest.json
    styles/<id>/<incarnation>/style-<sha16>.<ext>
    styles/<id>/<incarnation>/preview-<sha16>.<ext>
    styles/<id>/<incarnation>/weights/<sha256>.safetensors

A single ``PutObject`` is atomic: readers get the old object or the whole new one, so blobs
need no temporary names. The manifest compare-and-swap uses conditional writes:
``If-None-Match: *`` to create, ``If-Match: <etag>`` to replace (and to delete). The server
must honour them (AWS S3 does since 2024; so do current MinIO and Ceph RGW); the store
checks this once when opened and refuses a server that ignores them, since it would
silently lose concurrent updates.

Endpoint, region and credentials come from the usual AWS environment variables
(``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ...).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from model_store.backend import Backend, ManifestChanged
from model_store.errors import BackendError, InvalidStoreURL, StyleExists, StyleNotFound
from model_store.ids import is_valid_style_id, validate_style_id

_MANIFEST = "manifest.json"
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
# AWS answers 409 when two conditional writes to one key race; the loser retries.
_RACE = frozenset({"ConditionalRequestConflict", "409"})


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Backend(Backend):
    """Store on an S3-compatible bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        addressing_style: str = "auto",
        verify_conditional_writes: bool = True,
    ) -> None:
        """Open a store in ``bucket`` under ``prefix``.

        Args:
            bucket: bucket name (must exist).
            prefix: key prefix, e.g. ``"stylize/models"``.
            client: a boto3 S3 client; by default one is built from the environment.
            addressing_style: ``auto``, ``path`` (MinIO, Ceph) or ``virtual``.
            verify_conditional_writes: probe once that the server honours ``If-Match``.

        Raises:
            InvalidStoreURL: bad bucket/prefix, or a server without conditional writes.
            BackendError: the bucket cannot be reached.
        """
        parts = [p for p in prefix.split("/") if p]
        if not bucket or any(p in (".", "..") for p in parts):
            raise InvalidStoreURL(f"s3://{bucket}/{prefix}", "bad bucket or prefix")
        self.bucket = bucket
        self.prefix = "".join(p + "/" for p in parts)
        self._s3 = client or boto3.client(
            "s3",
            config=Config(
                retries={"mode": "standard", "max_attempts": 5},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
                s3={"addressing_style": addressing_style},
            ),
        )
        if verify_conditional_writes:
            self._probe_conditional_writes()

    def describe(self) -> str:
        """Return the ``s3://bucket/prefix/`` URL."""
        return f"s3://{self.bucket}/{self.prefix}"

    # --- keys and calls ------------------------------------------------------------------

    def _style_prefix(self, sid: str) -> str:
        return f"{self.prefix}styles/{validate_style_id(sid)}/"

    def _blob_key(self, sid: str, key: str) -> str:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"unsafe key {key!r}")
        return self._style_prefix(sid) + key

    def _call(self, operation: str, method: str, **kwargs: Any) -> Any:
        """Call the client; transport errors become BackendError, ClientError propagates."""
        try:
            return getattr(self._s3, method)(Bucket=self.bucket, **kwargs)
        except ClientError:
            raise  # callers map the codes they expect and wrap the rest with _fail
        except BotoCoreError as exc:
            raise BackendError(operation, str(exc)) from exc

    def _get(self, operation: str, key: str) -> tuple[bytes, str] | None:
        """Return ``(body, etag)`` of ``key``, or None if it does not exist."""
        try:
            resp = self._call(operation, "get_object", Key=key)
            return bytes(resp["Body"].read()), str(resp["ETag"])
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._fail(operation, exc) from exc
        except BotoCoreError as exc:  # the body stream broke mid-read
            raise BackendError(operation, str(exc)) from exc

    @staticmethod
    def _fail(operation: str, exc: ClientError) -> BackendError:
        return BackendError(operation, f"{_code(exc)}: {exc}")

    def _probe_conditional_writes(self) -> None:
        key = f"{self.prefix}.probe/{secrets.token_hex(8)}"
        try:
            self._call("probe", "put_object", Key=key, Body=b"1", IfNoneMatch="*")
            try:
                honoured = self._refused(key, IfNoneMatch="*") and self._refused(key, IfMatch='"0"')
            finally:
                self._call("probe", "delete_object", Key=key)
        except ClientError as exc:
            raise self._fail("probe", exc) from exc
        if not honoured:
            raise InvalidStoreURL(
                f"s3://{self.bucket}/{self.prefix}",
                "the server ignores conditional writes (If-Match / If-None-Match)",
            )

    def _refused(self, key: str, **condition: str) -> bool:
        """Return whether a put under a condition that does not hold is refused."""
        try:
            self._call("probe", "put_object", Key=key, Body=b"2", **condition)
        except ClientError as exc:
            if _code(exc) in _PRECONDITION:
                return True
            raise
        return False

    # --- manifest ------------------------------------------------------------------------

    def read_manifest(self, style_id: str) -> tuple[bytes, str] | None:
        """See :meth:`Backend.read_manifest`."""
        return self._get("read manifest", self._style_prefix(style_id) + _MANIFEST)

    def write_manifest(self, style_id: str, data: bytes, expect: str | None) -> str:
        """See :meth:`Backend.write_manifest`."""
        cond = {"IfNoneMatch": "*"} if expect is None else {"IfMatch": expect}
        try:
            resp = self._call(
                "write manifest",
                "put_object",
                Key=self._style_prefix(style_id) + _MANIFEST,
                Body=data,
                ContentType="application/json",
                **cond,
            )
        except ClientError as exc:
            code = _code(exc)
            if expect is None and code in _PRECONDITION | _RACE:
                raise StyleExists(style_id) from exc
            if code in _PRECONDITION | _RACE:
                raise ManifestChanged from exc
            if code in _MISSING:
                raise StyleNotFound(style_id) from exc
            raise self._fail("write manifest", exc) from exc
        return str(resp["ETag"])

    def delete_manifest(self, style_id: str, expect: str) -> None:
        """See :meth:`Backend.delete_manifest`."""
        key = self._style_prefix(style_id) + _MANIFEST
        try:
            self._call("delete manifest", "delete_object", Key=key, IfMatch=expect)
        except ClientError as exc:
            code = _code(exc)
            if code in _PRECONDITION | _RACE:
                raise ManifestChanged from exc
            if code in _MISSING:
                raise StyleNotFound(style_id) from exc
            if code == "NotImplemented":
                # Servers without conditional deletes: deleting is what was asked for,
                # the cancel before it was already committed by compare-and-swap.
                self._call("delete manifest", "delete_object", Key=key)
                return
            raise self._fail("delete manifest", exc) from exc

    def list_style_ids(self) -> list[str]:
        """See :meth:`Backend.list_style_ids`."""
        ids = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}styles/", Delimiter="/"
            )
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    sid = cp["Prefix"][len(self.prefix) + len("styles/") :].rstrip("/")
                    if is_valid_style_id(sid):
                        ids.append(sid)
        except ClientError as exc:
            raise self._fail("list", exc) from exc
        except BotoCoreError as exc:
            raise BackendError("list", str(exc)) from exc
        return ids

    def read_manifests(self, style_ids: list[str]) -> Iterable[tuple[str, bytes | None]]:
        """See :meth:`Backend.read_manifests`."""

        def one(sid: str) -> tuple[str, bytes | None]:
            got = self.read_manifest(sid)
            return sid, None if got is None else got[0]

        # One GET per style; in parallel so listing a few hundred styles stays fast.
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(one, style_ids))

    # --- blobs ---------------------------------------------------------------------------

    def put_blob(self, style_id: str, key: str, data: bytes) -> None:
        """See :meth:`Backend.put_blob`."""
        try:
            self._call("write", "put_object", Key=self._blob_key(style_id, key), Body=data)
        except ClientError as exc:
            raise self._fail("write", exc) from exc

    def get_blob(self, style_id: str, key: str) -> bytes | None:
        """See :meth:`Backend.get_blob`."""
        got = self._get("read", self._blob_key(style_id, key))
        return None if got is None else got[0]

    def list_blobs(self, style_id: str) -> list[tuple[str, float]]:
        """See :meth:`Backend.list_blobs`."""
        base = self._style_prefix(style_id)
        out = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base
            ):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(base) :]
                    if key != _MANIFEST:
                        out.append((key, obj["LastModified"].timestamp()))
        except ClientError as exc:
            raise self._fail("list", exc) from exc
        except BotoCoreError as exc:
            raise BackendError("list", str(exc)) from exc
        return out

    def delete_blobs(self, style_id: str, keys: Iterable[str]) -> None:
        """See :meth:`Backend.delete_blobs`."""
        full = [self._blob_key(style_id, k) for k in keys]
        for i in range(0, len(full), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in full[i : i + 1000]]
            try:
                resp = self._call(
                    "delete", "delete_objects", Delete={"Objects": batch, "Quiet": True}
                )
            except ClientError as exc:
                raise self._fail("delete", exc) from exc
            if resp.get("Errors"):
                raise BackendError("delete", str(resp["Errors"][:3]))
