"""Register the bundled demo styles in the model store on first start.

``demo_styles/manifest.json`` lists each style's files and their sha256; a file whose
digest does not match is refused (logged, never served). A style already in the store —
registered earlier, or concurrently by another replica — is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from model_store import ModelStore, StyleExists, StyleNotFound
from stylenet.model_file import read_info

log = logging.getLogger(__name__)
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "demo_styles"


def _read_verified(folder: Path, name: str, sha256: str) -> bytes:
    data = (folder / name).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"{folder / name}: sha256 {actual}, expected {sha256}")
    return data


def register_demo_styles(store: ModelStore, folder: Path = DEFAULT_DIR) -> list[str]:
    """Create and publish every demo style missing from ``store``; return the ids added."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        log.info("no demo styles at %s", folder)
        return []
    added = []
    for entry in json.loads(manifest_path.read_text())["styles"]:
        style_id = entry["id"]
        try:
            store.get(style_id)
            continue
        except StyleNotFound:
            pass
        style_folder = folder / style_id
        try:
            weights = _read_verified(style_folder, entry["generator"], entry["sha256"])
            image = _read_verified(style_folder, entry["style_image"], entry["style_image_sha256"])
            preview = _read_verified(style_folder, entry["preview"], entry["preview_sha256"])
        except (OSError, ValueError) as exc:
            log.error("demo style %s not registered: %s", style_id, exc)
            continue
        try:
            store.create(image, name=entry["name"], params=entry["train_params"], style_id=style_id)
        except StyleExists:
            continue  # another replica is registering it
        store.set_preview(style_id, preview)
        store.publish(
            style_id,
            weights,
            metadata={
                "source": entry["source"],
                "painting": entry["painting"],
                "demo": True,
                # The generator's shape: retrains and new styles may start from it.
                "config": read_info(weights).config.to_dict(),
            },
            metrics=entry["metrics"],
        )
        added.append(style_id)
        log.info("registered demo style %s (%s)", style_id, entry["name"])
    return added
