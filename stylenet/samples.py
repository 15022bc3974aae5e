"""Sample photographs for demos, tests and benchmarks, from scikit-image's ``skimage.data``.

scikit-image ships these photos inside its wheel, so they work offline. It is an
optional dependency (the ``test`` extra): this module imports it lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Colour photographs of ordinary scenes (content), in a fixed order.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "cat")
# A texture-like image used as the style in tests (a micrograph with strong colours).
TEXTURE = "immunohistochemistry"


def sample(name: str) -> Image.Image:
    """Return one of scikit-image's sample images as a PIL RGB image."""
    try:
        from skimage import data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("sample images need scikit-image: pip install scikit-image") from exc
    array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(np.asarray(array)).convert("RGB")


def export_photos(dest: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    """Write the sample photos into ``dest`` as PNG files (skipping existing ones)."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = dest / f"{name}.png"
        if not path.exists():
            sample(name).save(path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys

    for written in export_photos(Path(sys.argv[1] if len(sys.argv) > 1 else "data/content")):
        print(written)
