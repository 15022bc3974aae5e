"""Requests for different styles of one base share a forward pass (issue 27 item 2)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from blend_testing import LONE, family, store_url  # noqa: F401 (fixtures)
from PIL import Image
from service_testing import image_bytes

from service.runtime import InferenceRuntime, ModelKey
from stylenet import image_to_tensor, load_generator
from stylenet.inference import stylize_tensor

ORDER = ["a", "b", "c", "a"]


@pytest.fixture(scope="module")
def small_png(photo: Image.Image) -> bytes:
    return image_bytes(photo.resize((80, 64)), "PNG")


def _post(client, image: bytes, style: str):
    return client.post(
        "/stylize",
        params={"style": style, "format": "png"},
        content=image,
        headers={"content-type": "image/png"},
    )


def _together(client, image: bytes, styles: list[str]) -> list:
    with ThreadPoolExecutor(len(styles)) as pool:
        return list(pool.map(lambda s: _post(client, image, s), styles))


def _runtime(client) -> InferenceRuntime:
    return client.app.state.runtime  # type: ignore[no-any-return]


async def _load(runtime: InferenceRuntime, style: str) -> None:
    await runtime.generator(await runtime.styles.resolve(style))


def _alone(weights: bytes, image: bytes) -> np.ndarray:
    model, _ = load_generator(weights)
    photo = image_to_tensor(Image.open(io.BytesIO(image)).convert("RGB"))
    with torch.inference_mode():
        out = stylize_tensor(photo, model, dtype=torch.float32)
    return out[0].round().permute(1, 2, 0).numpy().astype(np.int16)


def test_different_styles_share_one_forward_and_equal_running_alone(
    make_client,
    family,  # noqa: F811
    small_png: bytes,
):
    _, weights = family
    with make_client(cpu_dtype="float32", max_batch_size=4, batch_timeout_ms=10_000) as client:
        # Loaded beforehand, so the four requests reach the batcher together (loading three
        # generators on a busy machine took longer than the batch's wait: a flaky split).
        for style in ("a", "b", "c"):
            client.portal.call(_load, _runtime(client), style)
        responses = _together(client, small_png, ORDER)
        assert [r.status_code for r in responses] == [200] * 4, responses[0].text
        assert [int(r.headers["x-batch-size"]) for r in responses] == [4] * 4
        assert [r.headers["x-style-id"] for r in responses] == ORDER
        for style, response in zip(ORDER, responses, strict=True):
            got = np.asarray(Image.open(io.BytesIO(response.content)), dtype=np.int16)
            assert np.abs(got - _alone(weights[style], small_png)).max() <= 1, style
        # The family's convolutions are held once: the other members cost their γ/β.
        runtime = _runtime(client)
        sizes = {
            key.style_id: entry.nbytes
            for key, entry in runtime.cache._entries.items()
            if isinstance(key, ModelKey)
        }
        assert runtime.mixer.families == 1
        full = max(sizes.values())
        assert sum(size < full / 20 for size in sizes.values()) == 2, sizes


def test_a_style_of_another_family_keeps_its_own_batch(make_client, small_png: bytes):
    with make_client(cpu_dtype="float32", max_batch_size=4, batch_timeout_ms=300) as client:
        responses = _together(client, small_png, ["a", LONE, "b", LONE])
        assert [r.status_code for r in responses] == [200] * 4
        sizes = [int(r.headers["x-batch-size"]) for r in responses]
        assert max(sizes) <= 2, sizes  # a+b may share, lone+lone may share; never across


def test_mixing_can_be_turned_off(make_client, small_png: bytes):
    with make_client(mixed_batches=False, max_batch_size=4, batch_timeout_ms=300) as client:
        responses = _together(client, small_png, ORDER)
        assert [r.status_code for r in responses] == [200] * 4
        assert max(int(r.headers["x-batch-size"]) for r in responses) <= 2
        assert _runtime(client).mixer.families == 0
