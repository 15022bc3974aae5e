"""Content images for training: discovery, hold-out split, and deterministic random crops.

Each training iteration's batch is a pure function of ``(seed, iteration)``: a resumed
run sees exactly the crops an uninterrupted one would, and background loading (a
``DataLoader`` with worker processes) cannot change the order.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from .corpus import EVALUATION_PHOTOS
from .errors import ContentImagesError, ImageError
from .pixels import image_to_tensor, to_rgb

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs in content folders too


def find_images(folder: Path) -> list[Path]:
    """Return the image files under ``folder`` (recursive), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ContentImagesError(f"content folder {folder} does not exist or is not a folder")
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def open_image(path: Path | str, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image fully into RGB, or raise :class:`ImageError` saying why not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > max_pixels:
                    raise ImageError(
                        f"{path}: {image.width}×{image.height} is over the pixel limit"
                    )
                image.load()
                return to_rgb(image)
    except ImageError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: cannot decode image ({exc})") from exc


def _holdout_key(path: Path) -> str:
    # Hash of the file name: the split does not move when unrelated files are added.
    return hashlib.sha256(path.name.encode()).hexdigest()


def split_holdout(paths: list[Path], holdout: int) -> tuple[list[Path], list[Path]]:
    """Split paths into (train, held-out); at least one image always stays for training."""
    holdout = min(holdout, max(0, len(paths) - 1))
    ranked = sorted(paths, key=_holdout_key)
    held = sorted(ranked[:holdout])
    return [p for p in paths if p not in set(held)], held


@dataclass(frozen=True)
class ContentSplit:
    """Which content photos a run trains on, and which it is scored on.

    Attributes:
        train: the photos the run trains on.
        held: the held-out photos (never trained on).
        verified: whether ``held`` are the corpus's evaluation photos (real photographs,
            tagged ``evaluation`` in its manifest); false for a folder without them (a
            user's own photos), whose held-out files were picked by name hash and may be
            anything.
    """

    train: list[Path]
    held: list[Path]
    verified: bool


def split_content(paths: list[Path], holdout: int) -> ContentSplit:
    """Split a content folder's photos into training and held-out photos.

    The corpus's evaluation photos are never trained on: where the folder has any, they
    are the held-out photos (all of them, whatever ``holdout`` says, so every style is
    scored on the same real photographs). Otherwise ``holdout`` photos are held out by
    :func:`split_holdout`. At least one photo always stays for training.
    """
    evaluation = set(EVALUATION_PHOTOS)
    held = sorted(p for p in paths if p.name in evaluation)
    train = [p for p in paths if p.name not in evaluation]
    if held and train:
        return ContentSplit(train, held, True)
    train, held = split_holdout(paths, holdout)
    return ContentSplit(train, held, False)


class ContentImages:
    """Content images decoded on demand and resized so the shorter side is ``side``.

    Files are decoded lazily (a folder of 80,000 photos does not fit in memory) and the
    most recent ones are kept in a per-process cache, so small folders cost one decode
    per file. Unreadable files are skipped with one warning, never a crash.
    """

    def __init__(self, paths: list[Path], side: int, cache_size: int = 256) -> None:
        self.paths, self.side, self.cache_size = list(paths), side, cache_size
        self._cache: dict[int, Image.Image] = {}
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> Image.Image | None:
        """Return image ``index`` resized, or None when it cannot be used."""
        if index in self._bad:
            return None
        image = self._cache.get(index)
        if image is not None:
            return image
        path = self.paths[index]
        try:
            image = open_image(path)
            if min(image.size) < 16:
                raise ImageError(f"{path}: smaller than 16 px")
        except ImageError as exc:
            log.warning("skipping content image: %s", exc)
            self._bad.add(index)
            return None
        image = fit_shorter_side(image, self.side)
        if len(self._cache) >= self.cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[index] = image
        return image

    def check_usable(self, source: str) -> None:
        """Raise :class:`ContentImagesError` unless at least one image decodes.

        Photos that exist but that this process may not read (a folder installed by root
        with mode 0600, say) are named as such, not as missing photos.
        """
        if any(self.get(i) is not None for i in range(len(self))):
            return
        unreadable = [p for p in self.paths if not os.access(p, os.R_OK)]
        if unreadable:
            raise ContentImagesError(
                f"{len(unreadable)} of {len(self.paths)} content images under {source} cannot "
                f"be read by this process (uid {os.getuid()}), e.g. {unreadable[0]}: permission "
                f"denied; make them readable (chmod -R a+rX {source})"
            )
        raise ContentImagesError(
            f"no usable content images (jpg, png, webp) under {source}; add photos to train on"
        )


def fit_shorter_side(image: Image.Image, side: int) -> Image.Image:
    """Resize ``image`` so its shorter side equals ``side`` (keeps the aspect ratio)."""
    scale = side / min(image.size)
    size = (max(side, round(image.width * scale)), max(side, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def center_crop(image: Image.Image, size: int) -> torch.Tensor:
    """Return the central ``size``×``size`` crop as a 1×3×size×size tensor."""
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image_to_tensor(image.crop((left, top, left + size, top + size)))


def central_crops(paths: list[Path], side: int) -> list[tuple[Path, torch.Tensor]]:
    """Return the held-out protocol's crops: (path, 1×3×side×side tensor) per photo.

    Each photo's shorter side is resized to ``side``, then its central square is taken;
    unreadable photos are skipped.
    """
    images = ContentImages(paths, side)
    return [(p, center_crop(im, side)) for i, p in enumerate(paths) if (im := images.get(i))]


class CropSequence(Dataset[torch.Tensor]):
    """Item ``i`` is the batch of iteration ``i``: random crops drawn from ``(seed, i)``.

    Images come already resized (shorter side = crop size), so a crop is a copy.
    Random horizontal flips double the variety of small content sets.
    """

    def __init__(self, images: ContentImages, size: int, batch: int, seed: int, total: int):
        self.images, self.size, self.batch, self.seed, self.total = images, size, batch, seed, total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, iteration: int) -> torch.Tensor:
        rng = random.Random(self.seed * 1_000_003 + iteration)
        crops = []
        for _ in range(self.batch):
            image = None
            while image is None:  # unreadable files are skipped, deterministically
                image = self.images.get(rng.randrange(len(self.images)))
            left = rng.randrange(image.width - self.size + 1)
            top = rng.randrange(image.height - self.size + 1)
            crop = image.crop((left, top, left + self.size, top + self.size))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crops.append(image_to_tensor(crop))
        return torch.cat(crops)


def iterate_batches(
    sequence: CropSequence, start: int, num_workers: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(iteration, batch)`` from ``start`` on, loaded in background workers if asked."""
    indices = range(start, len(sequence))
    if num_workers == 0:
        for i in indices:
            yield i, sequence[i]
        return
    loader = DataLoader(
        sequence,
        batch_size=None,
        sampler=list(indices),
        num_workers=num_workers,
        prefetch_factor=4,
        persistent_workers=False,
    )
    yield from zip(indices, loader, strict=True)
