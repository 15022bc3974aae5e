"""Shared fixtures: real sample photos, the real VGG19 weights, GPU marker handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from stylenet import samples


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def content_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos (scikit-image samples), downscaled to keep tests fast."""
    folder = tmp_path_factory.mktemp("content")
    for name in samples.PHOTOS:
        image = samples.sample(name)
        image.thumbnail((160, 160))
        image.save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="session")
def style_image() -> Image.Image:
    image = samples.sample(samples.TEXTURE)
    image.thumbnail((128, 128))
    return image


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    return samples.sample("astronaut")
