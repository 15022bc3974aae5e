"""Install the bundled demo styles in the model store at start.

``demo_styles/manifest.json`` lists each style's files and their sha256; a file whose
digest does not match is refused (logged, never served). Each style is installed with
:func:`model_store.install_bundled`: in one manifest write (a start that dies, e.g. on a
full disk, leaves nothing half-made), once (a style already there, installed by an
earlier start or concurrently by another process, is left alone), finishing a style an
earlier release left half-registered (``queued``, no version) with the bundled weights
rather than letting it be trained, and never again once a user deleted it (the store
keeps a tombstone). A failure is logged and the API starts anyway: the next start
installs what is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from model_store import (
    BundledStyle,
    InstallOutcome,
    ModelStore,
    ModelStoreError,
    StyleNotFound,
    install_bundled,
    read_bundle,
)
from stylenet.model_file import read_info

log = logging.getLogger(__name__)
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "demo_styles"


def _installed(store: ModelStore, style: BundledStyle) -> bool:
    """Whether the style is there and marked installed (the usual start: nothing to read)."""
    try:
        rec = store.get(style.id)
    except StyleNotFound:
        return False
    return rec.bundled and bool(rec.versions)


def _install(store: ModelStore, style: BundledStyle) -> InstallOutcome:
    weights = style.read("generator")
    return install_bundled(
        store,
        style.id,
        name=style.name,
        style_image=style.read("style_image"),
        preview=style.read("preview"),
        weights=weights,
        params=style.params,
        metadata={
            "source": style.entry.get("source"),
            "painting": style.entry.get("painting"),
            "demo": True,
            # The generator's shape: retrains and new styles may start from it.
            "config": read_info(weights).config.to_dict(),
        },
        metrics=style.metrics,
    )


def register_demo_styles(store: ModelStore, folder: Path = DEFAULT_DIR) -> list[str]:
    """Install every demo style missing from ``store``; return the ids installed now.

    A style whose files fail their check, or that the store cannot take now, is logged
    and skipped (the others are still installed).
    """
    try:
        styles = read_bundle(folder)
    except (OSError, ValueError) as exc:
        log.error("demo styles at %s not registered: %s", folder, exc)
        return []
    if not styles:
        log.info("no demo styles at %s", folder)
        return []
    added = []
    for style in styles:
        try:
            if _installed(store, style):
                continue
            outcome = _install(store, style)
        except (OSError, ValueError) as exc:
            log.error("demo style %s not registered: %s", style.id, exc)
            continue
        except ModelStoreError as exc:  # a full disk, say: the next start tries again
            log.error("demo style %s not registered now (next start): %s", style.id, exc)
            continue
        if outcome in (InstallOutcome.INSTALLED, InstallOutcome.FINISHED):
            added.append(style.id)
            how = "registered" if outcome is InstallOutcome.INSTALLED else "finished registering"
            log.info("%s demo style %s (%s)", how, style.id, style.name)
        elif outcome is InstallOutcome.DELETED:
            log.info("demo style %s was deleted: not registered again", style.id)
        elif outcome is InstallOutcome.TAKEN:
            log.warning("demo style %s not registered: the id holds another style", style.id)
    return added
