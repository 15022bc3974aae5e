"""Local-directory backend (``file:///data/models``), shareable by processes on one host.

Layout under the root::

    styles/<id>/manifest.json                           the record (JSON)
    styles/<id>/<incarnation>/style-<sha16>.<ext>       original style image
    styles/<id>/<incarnation>/preview-<sha16>.<ext>     preview thumbnail
    styles/<id>/<incarnation>/weights/<sha256>.safetensors
    .locks/<id>.lock                                    flock target for manifest CAS
    scratch/<id>/                                       training checkpoints

Every file is written to a hidden temporary name in its final directory, fsynced,
``os.replace``d into place and the directory fsynced, so readers (who take no lock) see
either the old file or the whole new one, and the rename survives a power loss.

The manifest compare-and-swap holds an exclusive ``flock`` on the style's lock file only
while it compares and replaces, so concurrent writers serialise there and readers never
wait. ``flock`` works across containers sharing a volume on one host; on NFS it needs a
server with working locks (NFSv4).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from model_store.backend import Backend, ManifestChanged
from model_store.errors import BackendError, StyleExists, StyleNotFound
from model_store.ids import is_valid_style_id, validate_style_id

_MANIFEST = "manifest.json"


def _token(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: Path) -> None:
    """Create missing directories, fsyncing each parent so the new entries persist."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(d.parent)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename + directory fsync."""
    for attempt in range(3):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            _makedirs_durable(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:
            # A concurrent cleanup pruned an (empty) parent directory: create it again.
            if attempt == 2:
                raise
            continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return


class FileBackend(Backend):
    """Store on a local (or host-shared) directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open (creating if needed) a store rooted at ``root``.

        Raises:
            BackendError: the directory cannot be created.
        """
        self.root = Path(root).absolute()
        try:
            _makedirs_durable(self.root / "styles")
            _makedirs_durable(self.root / ".locks")
        except OSError as exc:
            raise BackendError("open", f"{self.root}: {exc}") from exc

    def describe(self) -> str:
        """Return the ``file://`` URL of the root."""
        return self.root.as_uri()

    # --- paths and locking ---------------------------------------------------------------

    def _style_dir(self, sid: str) -> Path:
        return self.root / "styles" / validate_style_id(sid)

    def _blob_path(self, sid: str, key: str) -> Path:
        parts = key.split("/")
        # Keys come from validated manifests or our own listing; this is a last guard
        # that nothing can climb out of the style directory.
        if not key or any(p in ("", ".", "..") or "\0" in p for p in parts):
            raise ValueError(f"unsafe key {key!r}")
        return self._style_dir(sid).joinpath(*parts)

    @contextmanager
    def _locked(self, sid: str) -> Iterator[None]:
        path = self.root / ".locks" / f"{validate_style_id(sid)}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # ``delete`` unlinks the lock file while holding it; whoever was waiting
                # on that old inode must retry on the new file or two writers would each
                # hold "the" lock.
                st = os.fstat(fd)
                try:
                    cur = os.stat(path)
                except FileNotFoundError:
                    cur = None
            except BaseException:
                os.close(fd)
                raise
            if cur is not None and (cur.st_ino, cur.st_dev) == (st.st_ino, st.st_dev):
                break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)  # releases the flock

    # --- manifest ------------------------------------------------------------------------

    def read_manifest(self, style_id: str) -> tuple[bytes, str] | None:
        """See :meth:`Backend.read_manifest`."""
        try:
            data = (self._style_dir(style_id) / _MANIFEST).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendError("read manifest", f"{style_id}: {exc}") from exc
        return data, _token(data)

    def write_manifest(self, style_id: str, data: bytes, expect: str | None) -> str:
        """See :meth:`Backend.write_manifest`."""
        path = self._style_dir(style_id) / _MANIFEST
        try:
            with self._locked(style_id):
                self._check_token(style_id, path, expect)
                atomic_write(path, data)
        except OSError as exc:
            raise BackendError("write manifest", f"{style_id}: {exc}") from exc
        return _token(data)

    def delete_manifest(self, style_id: str, expect: str) -> None:
        """See :meth:`Backend.delete_manifest`."""
        path = self._style_dir(style_id) / _MANIFEST
        lock = self.root / ".locks" / f"{style_id}.lock"
        try:
            with self._locked(style_id):
                self._check_token(style_id, path, expect)
                path.unlink()
                _fsync_dir(path.parent)
                lock.unlink(missing_ok=True)  # safe: _locked re-checks the inode
        except OSError as exc:
            raise BackendError("delete manifest", f"{style_id}: {exc}") from exc

    @staticmethod
    def _check_token(style_id: str, path: Path, expect: str | None) -> None:
        try:
            current: bytes | None = path.read_bytes()
        except FileNotFoundError:
            current = None
        if expect is None:
            if current is not None:
                raise StyleExists(style_id)
        elif current is None:
            raise StyleNotFound(style_id)
        elif _token(current) != expect:
            raise ManifestChanged

    def list_style_ids(self) -> list[str]:
        """See :meth:`Backend.list_style_ids`."""
        try:
            with os.scandir(self.root / "styles") as it:
                return [e.name for e in it if is_valid_style_id(e.name) and e.is_dir()]
        except OSError as exc:
            raise BackendError("list", str(exc)) from exc

    # --- blobs ---------------------------------------------------------------------------

    def put_blob(self, style_id: str, key: str, data: bytes) -> None:
        """See :meth:`Backend.put_blob`."""
        try:
            atomic_write(self._blob_path(style_id, key), data)
        except OSError as exc:
            raise BackendError("write", f"{style_id}/{key}: {exc}") from exc

    def get_blob(self, style_id: str, key: str) -> bytes | None:
        """See :meth:`Backend.get_blob`."""
        try:
            return self._blob_path(style_id, key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendError("read", f"{style_id}/{key}: {exc}") from exc

    def list_blobs(self, style_id: str) -> list[tuple[str, float]]:
        """See :meth:`Backend.list_blobs`."""
        base = self._style_dir(style_id)
        out = []
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(base)
            for fname in files:
                if rel == Path(".") and fname == _MANIFEST:
                    continue
                try:
                    mtime = os.lstat(os.path.join(dirpath, fname)).st_mtime
                except FileNotFoundError:
                    continue
                out.append(((rel / fname).as_posix(), mtime))
        return out

    def delete_blobs(self, style_id: str, keys: Iterable[str]) -> None:
        """See :meth:`Backend.delete_blobs`."""
        base = self._style_dir(style_id)
        try:
            for key in keys:
                self._blob_path(style_id, key).unlink(missing_ok=True)
            # Prune directories left empty, deepest first; the style directory itself
            # goes too once it holds no manifest. A racing writer re-creates what it needs.
            for dirpath, _dirs, _files in os.walk(base, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                        raise
        except OSError as exc:
            raise BackendError("delete", f"{style_id}: {exc}") from exc

    # --- garbage -------------------------------------------------------------------------

    def collect_orphans(self, min_age_s: float) -> list[str]:
        """Remove ``.locks/<id>.lock`` files of styles without a manifest (a delete race).

        Each is removed while holding its flock, exactly as ``delete_manifest`` does, so
        a writer waiting on it retries on a fresh file (``_locked`` re-checks the inode);
        a lock someone holds now is skipped.
        """
        removed = []
        now = time.time()
        locks = self.root / ".locks"
        try:
            entries = list(os.scandir(locks))
        except OSError as exc:
            raise BackendError("list locks", str(exc)) from exc
        for entry in entries:
            sid = entry.name.removesuffix(".lock")
            if not entry.name.endswith(".lock") or not is_valid_style_id(sid):
                continue
            try:
                if now - entry.stat().st_mtime < min_age_s:
                    continue
            except FileNotFoundError:
                continue
            if self._remove_lock_if_orphan(sid, Path(entry.path)):
                removed.append(f".locks/{entry.name}")
        return removed

    def _remove_lock_if_orphan(self, sid: str, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use right now: not an orphan
            st, cur = os.fstat(fd), os.stat(path)
            same = (st.st_ino, st.st_dev) == (cur.st_ino, cur.st_dev)
            if not same or (self._style_dir(sid) / _MANIFEST).exists():
                return False
            path.unlink()
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(fd)
