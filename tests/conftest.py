"""Shared fixtures: real sample photos, the real VGG19 weights, GPU marker handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from stylenet import TrainParams, image_to_tensor, samples
from stylenet.data import ContentImages, center_crop, find_images, split_holdout
from stylenet.generators import build_generator
from stylenet.train import build_loss, evaluate


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


@pytest.fixture(scope="session")
def untrained_holdout_loss(content_dir: Path, style_image: Image.Image):
    """Return a function giving the held-out losses of the untrained generator of ``params``."""

    def measure(params: TrainParams, device: str = "cpu") -> dict[str, float]:
        loss = build_loss(params, torch.device(device), None)
        loss.set_style(image_to_tensor(style_image).to(device))
        _, held = split_holdout(find_images(content_dir), params.holdout)
        images = ContentImages(held, params.image_size)
        crops = [center_crop(images.get(i), params.image_size) for i in range(len(images))]
        torch.manual_seed(params.seed)  # the same initialization train() starts from
        generator = build_generator(params.generator_config).to(device)
        return evaluate(generator, loss, crops, torch.device(device))

    return measure


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    """URL of a real redis-server started for this test session (never the system one)."""
    from redis_server import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def tiny_generator_bytes(content_dir: Path, style_image: Image.Image) -> bytes:
    """A real generator file: 3 training iterations at 64 px with the real VGG19 (a few s)."""
    from stylenet import generator_to_bytes, train

    params = TrainParams(
        iterations=3, image_size=64, style_size=64, batch_size=1, width=0.25, holdout=1
    )
    result = train(style_image, content_dir, params)
    return generator_to_bytes(
        result.generator,
        train_params=params.to_dict(),
        lossnet=result.lossnet,
        metrics=result.metrics,
    )
