"""One style over many photos: what ``stylize apply ... --out FOLDER`` does.

:func:`plan` turns photos and folders into (photo, result file) pairs: a folder's images
(recursive, sorted) keep their sub-folders under the output folder, each result is named
after its photo (``beach.jpg`` → ``OUT/beach.jpg``, or ``OUT/beach.png`` with
``suffix=".png"``). :func:`run` makes them one by one with a converter built once (the
generator is loaded once) and never lets one photo stop the others: a file that cannot
be read, stylized or written is reported and skipped, a result that exists already is
kept unless ``force``. Results are written under a temporary name and renamed, so an
interrupted batch leaves no half-written file that a rerun would then keep.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from PIL import Image

from .data import IMAGE_SUFFIXES, find_images
from .errors import StylenetError

#: Per-photo failures reported and skipped: unreadable or undecodable files, images the
#: generator refuses, a full disk, a result too large for memory. Anything else is a bug.
PHOTO_ERRORS = (StylenetError, OSError, ValueError, RuntimeError, MemoryError)


@dataclass(frozen=True)
class Item:
    """One photo of a batch and the file its result goes to."""

    source: Path
    target: Path


@dataclass
class Report:
    """What a batch did, photo by photo."""

    written: list[Item] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)  # the result existed (no ``force``)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self, out_dir: Path, seconds: float) -> str:
        """One line for people: counts, the folder, the time."""
        parts = [f"{len(self.written)} written"]
        if self.kept:
            parts.append(f"{len(self.kept)} already there (kept; --force overwrites)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return f"{', '.join(parts)} in {out_dir} ({seconds:.1f}s)"


def plan(
    inputs: Sequence[Path], out_dir: Path, *, suffix: str | None = None
) -> tuple[list[Item], list[tuple[Path, str]]]:
    """Return the batch's items, and the inputs that cannot be done (with why).

    Args:
        inputs: photos and folders of photos (jpg, png, webp; searched recursively).
        out_dir: where the results go; when it lies inside a folder given, its files
            are not taken as photos (a rerun does not stylize the results).
        suffix: the results' file type (``.png``, ``.jpg``, ``.webp``); default: each
            photo's own (``.png`` for a file of another type).

    A missing input, two photos that would give the same result file, and a result that
    would replace its own photo are refused here, before any work.
    """
    out_dir = Path(out_dir)
    out_real = out_dir.resolve()
    items: list[Item] = []
    refused: list[tuple[Path, str]] = []
    taken: dict[Path, Path] = {}  # result file -> the photo that claimed it
    for given in inputs:
        if given.is_dir():
            found = find_images(given)
            folder = given.resolve()
            if out_real != folder and out_real.is_relative_to(folder):
                # The results folder inside this one: its files are results, not photos.
                found = [p for p in found if not p.resolve().is_relative_to(out_real)]
            named = [(p, p.relative_to(given)) for p in found]
        elif given.is_file():
            named = [(given, Path(given.name))]
        else:
            refused.append((given, "no such file or folder"))
            continue
        for source, relative in named:
            own = relative.suffix if relative.suffix.lower() in IMAGE_SUFFIXES else ".png"
            target = out_dir / relative.with_suffix(suffix or own)
            real = target.resolve()
            if real == source.resolve():
                refused.append((source, f"its result {target} would replace it; use another --out"))
            elif real in taken:
                refused.append((source, f"{taken[real]} gives the same result file {target}"))
            else:
                taken[real] = source
                items.append(Item(source, target))
    return items, refused


class ProgressLine:
    """A progress bar on a terminal; on anything else, one line per photo.

    Messages (a failed photo) are printed above the bar, which is then drawn again.
    """

    width = 24

    def __init__(self, total: int, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        """Count ``total`` photos on ``stream`` (default: stderr); ``quiet``: messages only."""
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._shown = ""

    def update(self, done: int, name: str) -> None:
        """Show that ``done`` photos of the total are finished, the last being ``name``."""
        if self.quiet:
            return
        filled = self.width * done // max(1, self.total)
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {name}"
        if self.tty:
            self._shown = line
            self.stream.write(f"\r\x1b[K{line}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own (above the bar)."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self._shown and not self.quiet:
            self.stream.write(self._shown)
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty and self._shown and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = ""


def _save(image: Image.Image, target: Path) -> None:
    """Write ``image`` to ``target`` under a temporary name, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    kind = Image.registered_extensions().get(target.suffix.lower())
    if kind is None:
        raise ValueError(f"unknown image file type {target.suffix!r}")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        image.save(partial, format=kind)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def run(
    items: Sequence[Item],
    convert: Callable[[Path], Image.Image],
    *,
    force: bool = False,
    progress: ProgressLine | None = None,
) -> Report:
    """Make each item's result with ``convert(photo)``; report, never raise, per photo.

    Args:
        items: what :func:`plan` returned.
        convert: reads one photo and returns its result (the loaded generator inside).
        force: replace results that exist already (default: keep them).
        progress: where to show progress and the failures (default: stderr).
    """
    progress = progress or ProgressLine(len(items))
    report = Report()
    for done, item in enumerate(items, 1):
        try:
            if item.target.exists() and not force:
                report.kept.append(item)
            else:
                _save(convert(item.source), item.target)
                report.written.append(item)
        except PHOTO_ERRORS as exc:
            reason = str(exc) or type(exc).__name__
            report.failed.append((item.source, reason))
            shown = reason if str(item.source) in reason else f"{item.source}: {reason}"
            progress.message(f"stylize: skipped {shown}")
        progress.update(done, str(item.source))
    progress.close()
    return report
