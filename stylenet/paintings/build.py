"""(Re)build the paintings ``manifest.json`` from ``selection.json``.

Run ``python -m stylenet.paintings.build`` after editing ``selection.json``. Like the
content corpus builder (:mod:`stylenet.corpus.build`, whose package fetching, copyright
parsing and hashing it reuses) it fetches each package once into the shared cache, reads
each chosen file and makes the painting exactly as an install will. It refuses, with a
:class:`SelectionError` naming the entry:

* GCompris and Tux Paint packages (GCompris is kept for independent evaluation);
* the demo styles, The Scream and The Starry Night: by file name, by the sha256 of their
  source files, and by look (a difference hash within :data:`NEAR_DUPLICATE_BITS` of
  theirs), so a renamed copy in another package is refused too;
* two entries that are the same painting (same hash, or near-identical look);
* an entry without a licence (neither in the selection nor in the package's Debian
  copyright file), without a title or artist, or with a role other than base/eval.

``--out-dir DIR`` also writes the paintings there, to look at them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..corpus import images
from ..corpus.build import NEAR_DUPLICATE_BITS, licence_for, parse_copyright
from ..corpus.sources import CorpusError, Source, fetch, installed_files, read_members
from .install import (
    DEMO_SOURCE_SHA256,
    FORMAT,
    MANIFEST,
    ROLES,
    default_package_cache,
    make_painting,
)

log = logging.getLogger(__name__)
SELECTION = Path(__file__).with_name("selection.json")
#: Packages never used here: GCompris (independent evaluation) and Tux Paint (clip-art).
RESERVED_SOURCES = re.compile(r"gcompris|tuxpaint", re.I)
#: File names of the demo styles (and their painters): never a painting of this corpus.
DEMO_NAMES = re.compile(r"scream|starry|munch|van.?gogh", re.I)
#: Difference hashes (:func:`stylenet.corpus.images.dhash`) of the demo styles as made by
#: :func:`make_painting`; demo_styles/*/style.jpg are within a few bits of them.
DEMO_DHASHES = {
    0x18CED57A8F82FF063E03DE5BF01F511D1BBD9F9E0D3E2C6E517E496629B329CD: "The Scream",
    0xDD3EDCCE36DC362C99B45A9D96E75C6E5C689CA19D168F9E2B8C1B998BD98363: "The Starry Night",
}
ID_PATTERN = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


class SelectionError(CorpusError):
    """An entry of the selection cannot be in the paintings corpus (the message says why)."""


def _bits(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def check_source(source: Source) -> None:
    """Refuse a reserved source package (GCompris, Tux Paint).

    Raises:
        SelectionError: ``source`` is reserved.
    """
    if RESERVED_SOURCES.search(source.name):
        raise SelectionError(f"{source.key}: reserved package, never a source of paintings")


def check_not_demo(
    where: str, path: str, raw: bytes | None = None, jpeg: bytes | None = None
) -> None:
    """Refuse a demo style by its file name, and (given its bytes) by hash and by look.

    Args:
        where: the source key, for the message.
        path: the file's path in the package.
        raw: the source file's bytes, if read yet.
        jpeg: the painting made of ``raw`` (made here when not given).

    Raises:
        SelectionError: the file is (or looks like) The Scream or The Starry Night.
    """
    if DEMO_NAMES.search(path):
        raise SelectionError(f"{where}: {path} is named like a demo style; not a painting here")
    if raw is None:
        return
    digest = images.sha256(raw)
    if digest in DEMO_SOURCE_SHA256:
        raise SelectionError(f"{where}: {path} is the demo style {DEMO_SOURCE_SHA256[digest]}")
    if jpeg is None:
        try:
            jpeg, _ = make_painting(raw)
        except ValueError:
            return  # not an image: the caller reports it
    look = images.dhash(jpeg)
    for demo_hash, title in DEMO_DHASHES.items():
        if _bits(look, demo_hash) <= NEAR_DUPLICATE_BITS:
            raise SelectionError(f"{where}: {path} looks like the demo style {title}")


def _read_source(
    source: Source, paths: set[str], cache: Path, fetcher: Callable[[Source, Path], Path]
) -> tuple[dict[str, bytes], Path | None]:
    """Return the wanted files (plus a Debian copyright file) and the package file used."""
    files = installed_files(source, paths)
    package = None
    if len(files) < len(paths) or source.kind == "debian":
        package = fetcher(source, cache)
        extra = {f"usr/share/doc/{source.name}/copyright"} if source.kind == "debian" else set()
        files.update(read_members(package, (paths - set(files)) | extra))
    return files, package


def build(
    selection: Path = SELECTION,
    package_cache: Path | None = None,
    out_dir: Path | None = None,
    fetcher: Callable[[Source, Path], Path] = fetch,
) -> dict[str, Any]:
    """Build and return the manifest for ``selection`` (see the module docstring).

    Raises:
        SelectionError: an entry is refused (reserved source, demo style, duplicate,
            missing file, licence, title, artist or role).
    """
    spec = json.loads(Path(selection).read_text())
    size, quality = int(spec["size"]), int(spec["quality"])
    cache = package_cache or default_package_cache()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "size": size,
        "quality": quality,
        "sources": {},
        "paintings": [],
    }
    seen_sha: dict[str, str] = {}
    seen_look: list[tuple[int, str]] = []
    ids: set[str] = set()
    for entry in spec["sources"]:
        source = Source(entry["kind"], entry["name"], entry["version"])
        check_source(source)
        for item in entry["paintings"]:
            check_not_demo(source.key, item["path"])  # before any download
        paths = {item["path"] for item in entry["paintings"]}
        files, package = _read_source(source, paths, cache, fetcher)
        copyright_text = files.pop(f"usr/share/doc/{source.name}/copyright", b"")
        stanzas = parse_copyright(copyright_text.decode("utf-8", "replace"))
        manifest["sources"][source.key] = {
            "kind": source.kind,
            "name": source.name,
            "version": source.version,
            **({"package_sha256": images.sha256(package.read_bytes())} if package else {}),
        }
        for item in entry["paintings"]:
            painting = _painting(source, entry, item, files, stanzas, size, quality)
            jpeg = painting.pop("_jpeg")
            where = f"{source.key}:{item['path']}"
            if painting["id"] in ids:
                raise SelectionError(f"{where}: id {painting['id']!r} is used twice")
            for digest in (painting["source_sha256"], painting["sha256"]):
                if digest in seen_sha:
                    raise SelectionError(f"{where}: same image as {seen_sha[digest]}")
            look = images.dhash(jpeg)
            near = [name for h, name in seen_look if _bits(h, look) <= NEAR_DUPLICATE_BITS]
            if near:
                raise SelectionError(f"{where}: looks like {near[0]}; choose another painting")
            ids.add(painting["id"])
            seen_sha.update({painting["source_sha256"]: where, painting["sha256"]: where})
            seen_look.append((look, painting["id"]))
            manifest["paintings"].append(painting)
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / painting["file"]).write_bytes(jpeg)
        log.info("%s: %d paintings so far", source.key, len(manifest["paintings"]))
    return manifest


def _painting(
    source: Source,
    entry: dict[str, Any],
    item: dict[str, Any],
    files: dict[str, bytes],
    stanzas: list[tuple[list[str], str]],
    size: int,
    quality: int,
) -> dict[str, Any]:
    """Check one selection entry and return its manifest record (with its ``_jpeg``)."""
    path = item["path"]
    where = f"{source.key}:{path}"
    raw = files.get(path)
    if raw is None:
        raise SelectionError(f"{where}: not in the package")
    try:
        jpeg, tags = make_painting(raw, size, quality)
    except ValueError as exc:
        raise SelectionError(f"{where}: {exc}") from exc
    check_not_demo(source.key, path, raw, jpeg)
    # Copyright files name source-tree paths: map an installed prefix back if told how.
    installed_prefix, source_prefix = entry.get("copyright_prefix", ["", ""])
    copyright_path = path
    if installed_prefix and path.startswith(installed_prefix):
        copyright_path = source_prefix + path.removeprefix(installed_prefix)
    package_licence = licence_for(copyright_path, stanzas)
    licence = item.get("licence") or entry.get("licence") or package_licence
    if not licence:
        raise SelectionError(f"{where}: no licence found; give one in the selection")
    for field in ("id", "title", "artist"):
        if not str(item.get(field) or "").strip():
            raise SelectionError(f"{where}: no {field}")
    if not ID_PATTERN.fullmatch(item["id"]):
        raise SelectionError(f"{where}: id {item['id']!r} is not a lower-case slug")
    if item.get("role") not in ROLES:
        raise SelectionError(f"{where}: role must be one of {ROLES}")
    record: dict[str, Any] = {
        "id": item["id"],
        "file": f"{item['role']}/{item['id']}.jpg",  # base/ and eval/ never mix
        "title": item["title"],
        "artist": item["artist"],
        "year": item.get("year"),
        "source": source.key,
        "path": path,
        "licence": licence,
        **({"package_licence": package_licence} if package_licence else {}),
        "source_sha256": images.sha256(raw),
        "sha256": images.sha256(jpeg),
        "role": item["role"],
        "tags": sorted({*item.get("tags", []), *tags}),
        "_jpeg": jpeg,
    }
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line: rebuild the manifest from the selection."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--selection", type=Path, default=SELECTION)
    parser.add_argument("--out", type=Path, default=MANIFEST, help="manifest to write")
    parser.add_argument("--package-cache", type=Path, default=None)
    parser.add_argument("--out-dir", type=Path, default=None, help="also write paintings here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        manifest = build(args.selection, args.package_cache, args.out_dir)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    roles = {r: sum(p["role"] == r for p in manifest["paintings"]) for r in ROLES}
    print(
        f"{args.out}: {len(manifest['paintings'])} paintings ({roles['base']} base, "
        f"{roles['eval']} eval) from {len(manifest['sources'])} sources"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
