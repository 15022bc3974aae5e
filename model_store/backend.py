"""The storage primitives a backend provides; ``ModelStore`` builds everything on them.

Two kinds of object per style:

* one **manifest** (``<id>/manifest.json``) with compare-and-swap: ``read_manifest``
  returns the bytes plus an opaque token, and ``write_manifest`` succeeds only if the
  token is unchanged (``expect=None``: create only if absent);
* immutable **blobs** (style image, preview, weights) under ``<id>/<incarnation>/``, each
  written atomically: a reader sees no file or the whole file, never part of one.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable


class ManifestChanged(Exception):  # a retry signal internal to the package
    """The manifest token no longer matches: re-read and retry."""


class Backend(abc.ABC):
    """Manifest compare-and-swap plus atomic blob storage, keyed by style id.

    Style ids reaching a backend are already validated; backends validate them again
    before building a path or key, as a second guard.
    """

    @abc.abstractmethod
    def describe(self) -> str:
        """Return the store's URL-like location, for logs and ``repr``."""

    @abc.abstractmethod
    def read_manifest(self, style_id: str) -> tuple[bytes, str] | None:
        """Return ``(manifest bytes, token)``, or None if the style has no manifest."""

    @abc.abstractmethod
    def write_manifest(self, style_id: str, data: bytes, expect: str | None) -> str:
        """Write the manifest if its token is still ``expect``; return the new token.

        Raises:
            StyleExists: ``expect`` is None and a manifest exists.
            StyleNotFound: ``expect`` is set and there is no manifest.
            ManifestChanged: the token differs from ``expect``.
        """

    @abc.abstractmethod
    def delete_manifest(self, style_id: str, expect: str) -> None:
        """Delete the manifest if its token is still ``expect`` (errors as for writes)."""

    @abc.abstractmethod
    def list_style_ids(self) -> list[str]:
        """Return the (valid) ids having any stored data, in any order."""

    def read_manifests(self, style_ids: list[str]) -> Iterable[tuple[str, bytes | None]]:
        """Return each id with its manifest bytes; backends may parallelise this."""
        for sid in style_ids:
            got = self.read_manifest(sid)
            yield sid, None if got is None else got[0]

    @abc.abstractmethod
    def put_blob(self, style_id: str, key: str, data: bytes) -> None:
        """Atomically store ``data`` at ``key`` (``<incarnation>/<name>``)."""

    @abc.abstractmethod
    def get_blob(self, style_id: str, key: str) -> bytes | None:
        """Return the blob at ``key``, or None if absent."""

    @abc.abstractmethod
    def list_blobs(self, style_id: str) -> list[tuple[str, float]]:
        """Return ``(key, mtime)`` of every stored file of the style except the manifest.

        Includes temporary files of interrupted writes, so ``gc`` can find them.
        """

    @abc.abstractmethod
    def delete_blobs(self, style_id: str, keys: Iterable[str]) -> None:
        """Delete the given keys; missing ones are ignored."""

    def collect_orphans(self, min_age_s: float) -> list[str]:
        """Remove backend-internal leftovers of deleted styles older than ``min_age_s``.

        Returns what was removed (paths relative to the store). The default has none.
        """
        return []
