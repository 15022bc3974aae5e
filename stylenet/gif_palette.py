"""A GIF's palette made from the clip itself, instead of FFmpeg's fixed ``rgb8`` cube.

FFmpeg's GIF encoder takes ``rgb8`` (3-3-2 bits: 256 fixed colours, coarse bands) or
``pal8`` frames that carry their own palette. :class:`ClipPalette` makes one palette per
clip from a sample of its first frames (:data:`PALETTE_FRAMES`, held until the palette
is made, never more), so colours do not shift from frame to frame as per-frame palettes
would make them: the sample's exact colours when it has at most 256, else Pillow's median
cut over it. Each frame is then mapped to it with Floyd–Steinberg dithering (as FFmpeg's
``paletteuse`` dithers by error diffusion). Colours of later frames that the first ones
lack are approximated by the palette's nearest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

#: Frames the palette is taken from (the first ones of the clip; all of a shorter clip).
PALETTE_FRAMES = 8
#: At most this many pixels of the sample go into the median cut (strided beyond).
SAMPLE_PIXELS = 1 << 20


class ClipPalette:
    """A palette of at most 256 colours and the mapping of RGB frames onto it."""

    def __init__(self, frames: Sequence[np.ndarray]) -> None:
        """Make the palette from ``frames`` (H×W×3 uint8, at least one)."""
        pixels = np.concatenate([f.reshape(-1, 3) for f in frames])
        stride = max(1, pixels.shape[0] // SAMPLE_PIXELS)
        pixels = pixels[::stride]
        colours = np.unique(pixels, axis=0)
        if colours.shape[0] > 256:
            strip = Image.fromarray(np.ascontiguousarray(pixels[None]), "RGB")
            cut = strip.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            used = len(cut.getcolors(256) or ()) or 256
            colours = np.asarray(cut.getpalette()[: 3 * used], np.uint8).reshape(-1, 3)
        self.colours = colours
        padded = np.zeros((256, 3), np.uint8)
        padded[: len(colours)] = colours
        # Pillow maps onto every entry of a "P" image's palette: pad with the first colour.
        padded[len(colours) :] = colours[0]
        self._image = Image.new("P", (1, 1))
        self._image.putpalette(padded.reshape(-1).tolist())
        argb = np.full((256, 4), 255, np.uint8)
        argb[:, 1:] = padded
        self.argb = argb

    def indices(self, frame: np.ndarray) -> np.ndarray:
        """Map an H×W×3 uint8 frame to palette indices (H×W uint8, dithered)."""
        image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
        mapped = image.quantize(palette=self._image, dither=Image.Dither.FLOYDSTEINBERG)
        return np.asarray(mapped, np.uint8)


__all__ = ["PALETTE_FRAMES", "ClipPalette"]
