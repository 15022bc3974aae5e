"""Shared fixtures: real sample photos, the real VGG19 weights, GPU marker handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from parallel import cores, share_the_cores
from PIL import Image

from stylenet import TrainParams, image_to_tensor, samples
from stylenet.data import ContentImages, center_crop, find_images, split_holdout
from stylenet.generators import build_generator
from stylenet.train import build_loss, evaluate

share_the_cores()  # before any test starts torch work or a process

#: Files whose tests each start their own processes (function-scoped stacks, workers, Redis):
#: spread one by one over the xdist processes. Any other file's tests stay together, so its
#: module-scoped fixtures (a stack, a service, a trained generator) start once.
_SPREAD = ("chaos/", "integration/training_worker/")
#: The longest units first, so that none of them starts last and holds up the end.
_FIRST = ("e2e/test_web_", "e2e/", "chaos/", "integration/training_worker/", "integration/")


def _unit_of_work(nodeid: str) -> str | None:
    """The unit of work of a test (one xdist process runs a unit); None: the test alone."""
    path = nodeid.split("::")[0].removeprefix("tests/")
    if path.startswith("e2e/test_web_"):
        return "browser"  # one stack and one Chromium for every page test (e2e/conftest.py)
    if path.startswith(_SPREAD):
        return None
    return path


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.removeprefix("tests/")
    return next((i for i, prefix in enumerate(_FIRST) if path.startswith(prefix)), len(_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the collection order within each rank
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup`` (``make test``): whole units of work to each process.

    Its own scheduler, not ``xdist_group`` marks: under pytest 9 xdist 3.8 never sees the
    marks (it renames ``item._nodeid``, which no longer changes ``item.nodeid``), so every
    test went anywhere: each process started the page tests' stack and Chromium and each
    file's module-scoped services, up to three times over.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitsOfWork(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit_of_work(nodeid) or nodeid

    return UnitsOfWork(config, log)  # type: ignore[arg-type]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one process more than the cores (half the tests wait on processes)."""
    return min(8, cores() + 1)


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
