"""``stylize content fetch``: download a public photo data set for hosts with internet.

The archive is downloaded resumably (a ``.part`` file continued with an HTTP ``Range``
request), checked against its known digest (or ``--sha256``), then its photos are resized
to the training size and written atomically into the destination, so an interrupted run
continues where it stopped.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_bytes
from . import images
from .install import default_package_cache
from .sources import CorpusError

log = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass(frozen=True)
class Dataset:
    """A downloadable archive of photos."""

    url: str
    md5: str | None = None
    sha256: str | None = None
    prefix: str = "photo"
    licence: str = ""


DATASETS = {
    # 5,000 photos of everyday scenes; each image keeps its Flickr licence (COCO terms).
    "coco2017-val": Dataset(
        url="http://images.cocodataset.org/zips/val2017.zip",
        md5="442b8da7639aecaf257c1dceb8ba8c80",
        prefix="coco",
        licence="COCO terms of use: each image under its own Flickr (Creative Commons) licence",
    ),
}


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout_s: float = 60.0,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``target`` resumably and verify it.

    A partial download is kept as ``<target>.part`` and continued with a ``Range``
    request (restarted when the server ignores it). The finished file is checked against
    ``sha256`` or ``md5`` (when given) before it is renamed to ``target``; a mismatch
    deletes it and raises.

    Raises:
        CorpusError: the download failed or its digest is wrong.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                resumed = have > 0 and response.status == 206
                if have and not resumed:
                    log.info("server ignored the range request; downloading %s again", url)
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                with open(part, "ab" if resumed else "wb") as handle:
                    done = have
                    while chunk := response.read(CHUNK):
                        handle.write(chunk)
                        done += len(chunk)
                        if on_progress:
                            on_progress(done, total)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # the .part is already complete
                log.info("%s: already fully downloaded", part)
            else:
                raise CorpusError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise CorpusError(
                f"cannot download {url}: {exc} (run the same command again to resume)"
            ) from exc
        part.replace(target)
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected:
            actual = _digest(target, algorithm)
            if actual != expected.lower():
                target.unlink()
                raise CorpusError(
                    f"{url}: {algorithm} is {actual}, expected {expected}; "
                    "the download was deleted (corrupted or not the expected file)"
                )
            break
    return target


def extract_photos(
    archive: Path, dest: Path, *, prefix: str, limit: int | None = None, size: int = images.SIZE
) -> int:
    """Resize the JPEG/PNG photos of a zip archive into ``dest``; return how many are there.

    Members are taken in name order (``limit`` first ones); existing outputs are kept.
    """
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = sorted(
                n for n in zipped.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png"))
            )
            for name in names[:limit]:
                stem = Path(name).stem
                out = dest / f"{prefix}-{stem}.jpg"
                if not out.exists():
                    try:
                        jpeg, _ = images.make_photo(zipped.read(name), size)
                    except ValueError as exc:
                        log.warning("%s: %s skipped: %s", archive.name, name, exc)
                        continue
                    atomic_write_bytes(out, jpeg)
                count += 1
    except zipfile.BadZipFile as exc:
        raise CorpusError(f"{archive}: not a zip archive ({exc})") from exc
    return count


def fetch_dataset(
    name: str,
    dest: Path,
    *,
    url: str | None = None,
    limit: int | None = None,
    size: int = images.SIZE,
    sha256: str | None = None,
    md5: str | None = None,
    cache: Path | None = None,
) -> int:
    """Download data set ``name`` (see :data:`DATASETS`) and install its photos in ``dest``.

    ``url`` overrides where it comes from; ``sha256``/``md5`` override its known digest
    (with another ``url`` and no digest given, the download is not verified).

    Returns:
        The number of the data set's photos present in ``dest``.
    """
    if name not in DATASETS:
        raise CorpusError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if url is None or url == spec.url:
        url = spec.url
        sha256, md5 = sha256 or spec.sha256, md5 or (None if sha256 else spec.md5)
    elif not (sha256 or md5):
        log.warning("no checksum given for %s: the archive is not verified", url)
    cache = cache or default_package_cache()
    archive = download(url, cache / f"{name}.zip", sha256=sha256, md5=md5)
    count = extract_photos(archive, dest, prefix=spec.prefix, limit=limit, size=size)
    log.info("%s: %d photos in %s (%s)", name, count, dest, spec.licence)
    return count
