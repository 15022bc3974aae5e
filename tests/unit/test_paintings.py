"""The paintings corpus: its manifest, the builder's refusals, install on a fake package."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylenet import paintings
from stylenet.cli import main as cli_main
from stylenet.corpus import Source, images
from stylenet.corpus.build import NEAR_DUPLICATE_BITS
from stylenet.paintings.build import (
    DEMO_DHASHES,
    DEMO_NAMES,
    RESERVED_SOURCES,
    SelectionError,
    build,
)

REPO = Path(__file__).resolve().parents[2]
DEMO_FILES = {
    ("debian:darknet", "usr/share/darknet/data/scream.jpg"),
    ("debian:opencv-doc", "usr/share/doc/opencv-doc/examples/data/starry_night.jpg"),
}


# ------------------------------------------------------------------ the real manifest


def test_manifest_has_base_and_eval_paintings() -> None:
    data = paintings.load_manifest()
    roles = [p["role"] for p in data["paintings"]]
    assert set(roles) <= set(paintings.ROLES)
    assert roles.count("base") >= 16
    assert roles.count("eval") >= 4
    assert data["size"] == 512 and data["quality"] == 92


def test_manifest_entries_are_unique_and_licensed() -> None:
    data = paintings.load_manifest()
    items = data["paintings"]
    for field in ("id", "file", "sha256", "source_sha256"):
        assert len({p[field] for p in items}) == len(items), field
    assert len({(p["source"], p["path"]) for p in items}) == len(items)
    for p in items:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", p["id"]), p
        assert p["file"] == f"{p['role']}/{p['id']}.jpg"
        assert p["licence"].strip() and p["title"].strip() and p["artist"].strip(), p
        assert p["year"] is None or str(p["year"]).strip()
        assert re.fullmatch(r"[0-9a-f]{64}", p["source_sha256"])
        assert re.fullmatch(r"[0-9a-f]{64}", p["sha256"])
        source = data["sources"][p["source"]]
        assert p["source"] == f"{source['kind']}:{source['name']}"
        assert source["kind"] in ("debian", "pypi") and source["version"]


def test_manifest_has_no_reserved_sources_and_no_demo_styles() -> None:
    data = paintings.load_manifest()
    assert not [key for key in data["sources"] if RESERVED_SOURCES.search(key)]
    for p in data["paintings"]:
        assert (p["source"], p["path"]) not in DEMO_FILES
        assert not DEMO_NAMES.search(p["path"]) and not DEMO_NAMES.search(p["id"]), p
        assert p["source_sha256"] not in paintings.DEMO_SOURCE_SHA256
        assert "scream" not in p["title"].lower() and "starry" not in p["title"].lower()


def test_eval_and_base_paintings_are_disjoint() -> None:
    base, held_out = paintings.painting_ids("base"), paintings.painting_ids("eval")
    assert base and held_out and not set(base) & set(held_out)
    assert sorted(base + held_out) == sorted(paintings.painting_ids())
    items = paintings.load_manifest()["paintings"]
    base_sha = {p["source_sha256"] for p in items if p["role"] == "base"}
    assert not base_sha & {p["source_sha256"] for p in items if p["role"] == "eval"}
    with pytest.raises(ValueError, match="role"):
        paintings.painting_ids("demo")


def test_demo_hashes_match_the_bundled_demo_styles() -> None:
    styles = sorted((REPO / "demo_styles").glob("*/style.jpg"))
    assert len(styles) == 2
    for style in styles:
        look = images.dhash(style.read_bytes())
        nearest = min(bin(look ^ h).count("1") for h in DEMO_DHASHES)
        assert nearest <= NEAR_DUPLICATE_BITS, style


# ------------------------------------------------------------------ build and install


def _noise(seed: int, size: tuple[int, int], mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(out, "PNG")
    return out.getvalue()


def _wheel(folder: Path, files: dict[str, bytes]) -> Path:
    package = folder / "stylize_fake_paintings_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(package, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return package


def _selection(folder: Path, sources: list[dict]) -> Path:
    path = folder / "selection.json"
    path.write_text(json.dumps({"size": 64, "quality": 90, "sources": sources}))
    return path


def _entry(path: str, painting_id: str, role: str = "base") -> dict:
    return {"id": painting_id, "path": path, "title": "T", "artist": "A", "role": role}


FAKE = {"kind": "pypi", "name": "stylize-fake-paintings-pkg", "version": "1.0"}


def _fetch_from(package: Path, calls: list[str]) -> Callable[[Source, Path], Path]:
    def fetch(source: Source, cache: Path) -> Path:
        calls.append(source.key)
        return package

    return fetch


def test_build_refuses_a_demo_style_source_file_before_downloading(tmp_path: Path) -> None:
    for key, path in DEMO_FILES:
        kind, name = key.split(":")
        entry = {"kind": kind, "name": name, "version": "1", "paintings": [_entry(path, "x")]}
        calls: list[str] = []
        with pytest.raises(SelectionError, match="demo style"):
            build(_selection(tmp_path, [entry]), tmp_path, fetcher=_fetch_from(tmp_path, calls))
        assert calls == []  # refused by name: nothing fetched


def test_build_refuses_a_renamed_copy_of_a_demo_style(tmp_path: Path) -> None:
    scream = (REPO / "demo_styles" / "scream" / "style.jpg").read_bytes()
    package = _wheel(tmp_path, {"pkg/a.png": _noise(1, (80, 60)), "pkg/expressionism.jpg": scream})
    entry = {
        **FAKE,
        "licence": "CC0-1.0",
        "paintings": [_entry("pkg/a.png", "a"), _entry("pkg/expressionism.jpg", "b")],
    }
    with pytest.raises(SelectionError, match="looks like the demo style The Scream"):
        build(_selection(tmp_path, [entry]), tmp_path, fetcher=_fetch_from(package, []))


def test_build_refuses_reserved_sources_duplicates_and_missing_licences(tmp_path: Path) -> None:
    package = _wheel(tmp_path, {"pkg/a.png": _noise(1, (80, 60)), "pkg/b.png": _noise(2, (80, 60))})
    fetch = _fetch_from(package, [])
    reserved = {**FAKE, "name": "gcompris-data", "licence": "GPL-3+", "paintings": []}
    with pytest.raises(SelectionError, match="reserved"):
        build(_selection(tmp_path, [reserved]), tmp_path, fetcher=fetch)
    twice = {**FAKE, "licence": "CC0-1.0", "paintings": [_entry("pkg/a.png", "a")] * 2}
    with pytest.raises(SelectionError, match="used twice"):
        build(_selection(tmp_path, [twice]), tmp_path, fetcher=fetch)
    same = {
        **FAKE,
        "licence": "MIT",
        "paintings": [_entry("pkg/a.png", "a"), _entry("pkg/a.png", "b")],
    }
    with pytest.raises(SelectionError, match="same image"):
        build(_selection(tmp_path, [same]), tmp_path, fetcher=fetch)
    unlicensed = {**FAKE, "paintings": [_entry("pkg/a.png", "a")]}
    with pytest.raises(SelectionError, match="no licence"):
        build(_selection(tmp_path, [unlicensed]), tmp_path, fetcher=fetch)
    bad_role = {**FAKE, "licence": "MIT", "paintings": [_entry("pkg/a.png", "a", "demo")]}
    with pytest.raises(SelectionError, match="role"):
        build(_selection(tmp_path, [bad_role]), tmp_path, fetcher=fetch)


def test_make_painting_keeps_the_whole_composition() -> None:
    wide, tags = paintings.make_painting(_noise(3, (1200, 400)))
    tall, _ = paintings.make_painting(_noise(4, (100, 300), "L"))
    with Image.open(io.BytesIO(wide)) as image:
        assert image.size == (512, 171) and image.mode == "RGB"
    assert tags == []
    with Image.open(io.BytesIO(tall)) as image:
        assert image.size == (171, 512) and image.mode == "RGB"
    assert paintings.make_painting(_noise(4, (100, 300), "L"))[1] == ["greyscale", "upscaled"]


@pytest.fixture
def fake_paintings(tmp_path: Path) -> tuple[Path, Path]:
    """A manifest of three paintings built from a fake wheel, and that wheel."""
    files = {f"pkg/{n}.png": _noise(seed, (90, 60)) for seed, n in enumerate("abc")}
    package = _wheel(tmp_path, files)
    entry = {
        **FAKE,
        "licence": "CC0-1.0",
        "paintings": [_entry("pkg/a.png", "a"), _entry("pkg/b.png", "b"), _entry("pkg/c.png", "c")],
    }
    entry["paintings"][2]["role"] = "eval"
    manifest = build(_selection(tmp_path, [entry]), tmp_path, fetcher=_fetch_from(package, []))
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path, package


def test_install_verifies_writes_and_skips_present_paintings(
    tmp_path: Path, fake_paintings: tuple[Path, Path]
) -> None:
    manifest, package = fake_paintings
    dest, calls = tmp_path / "paintings", []
    report = paintings.install(dest, manifest=manifest, fetcher=_fetch_from(package, calls))
    assert (report.installed, report.written, report.total, report.failures) == (3, 3, 3, [])
    for name in ("base/a", "base/b", "eval/c"):
        with Image.open(dest / f"{name}.jpg") as image:
            assert max(image.size) == 64 and image.mode == "RGB"
    again = paintings.install(dest, manifest=manifest, fetcher=_fetch_from(package, calls))
    assert (again.installed, again.written) == (3, 0)
    assert calls == ["pypi:stylize-fake-paintings-pkg"]  # fetched once, then skipped


def test_install_refuses_a_changed_source_file(
    tmp_path: Path, fake_paintings: tuple[Path, Path]
) -> None:
    manifest, package = fake_paintings
    data = json.loads(manifest.read_text())
    data["paintings"][0]["source_sha256"] = "0" * 64
    manifest.write_text(json.dumps(data))
    report = paintings.install(
        tmp_path / "out", manifest=manifest, fetcher=_fetch_from(package, [])
    )
    assert (report.installed, report.total) == (2, 3)
    assert len(report.failures) == 1 and "sha256" in report.failures[0]


def test_cli_paintings_install(tmp_path: Path, fake_paintings, capsys) -> None:
    manifest, package = fake_paintings
    cache = tmp_path / "cache"
    cache.mkdir()
    package.rename(cache / package.name)  # found in the package cache: no download
    dest = tmp_path / "dest"
    argv = ["paintings", "install", "--dest", str(dest), "--manifest", str(manifest)]
    assert cli_main([*argv, "--package-cache", str(cache)]) == 0
    assert "3 of 3 paintings" in capsys.readouterr().out
    assert sorted(p.name for p in (dest / "base").glob("*.jpg")) == ["a.jpg", "b.jpg"]
    assert sorted(p.name for p in (dest / "eval").glob("*.jpg")) == ["c.jpg"]
    assert cli_main([*argv, "--package-cache", str(tmp_path / "empty")]) == 0  # all present


def test_default_paintings_dir_sits_beside_the_content_corpus(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(tmp_path))
    assert paintings.default_paintings_dir() == tmp_path / "paintings"
