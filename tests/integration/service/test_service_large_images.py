"""Large images: exact tiled inference in a lane of their own (issue: any size).

The lane's threshold is lowered so small test images take it; the answer must equal the
whole-image forward of the same generator, and the batcher must not see the request.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from PIL import Image
from service_testing import image_bytes, metric

from stylenet import load_generator, stylize_tensor
from stylenet.pixels import image_to_tensor


def _batches(client: Any) -> float:
    return metric(client.get("/metrics").text, "stylize_batch_size_count")


def test_large_images_are_tiled_and_equal_the_whole_image_forward(
    make_client: Callable[..., AbstractContextManager[Any]],
    tiny_generator_bytes: bytes,
    photo: Image.Image,
) -> None:
    source = photo.convert("RGB").resize((97, 75))
    with make_client(tile_pixels=64 * 64, tile_side=16) as client:
        before = _batches(client)
        response = client.post(
            "/stylize",
            params={"style": "alpha", "format": "png", "max_side": 4096},
            files={"image": ("p.png", image_bytes(source, "PNG"), "image/png")},
        )
        assert response.status_code == 200, response.text
        assert _batches(client) == before  # the large-image lane, not the batcher
        small = client.post(
            "/stylize",
            params={"style": "alpha", "format": "png"},
            files={"image": ("p.png", image_bytes(source.resize((40, 30)), "PNG"), "image/png")},
        )
        assert small.status_code == 200 and _batches(client) == before + 1
    served = np.asarray(Image.open(io.BytesIO(response.content)), dtype=np.int16)
    generator, _ = load_generator(tiny_generator_bytes)
    whole = stylize_tensor(image_to_tensor(source), generator, dtype=torch.float32)
    expected = whole.round()[0].permute(1, 2, 0).numpy().astype(np.int16)
    assert served.shape == expected.shape
    assert int(np.abs(served - expected).max()) <= 1


def test_a_full_large_lane_answers_429_at_once(
    make_client: Callable[..., AbstractContextManager[Any]], photo: Image.Image
) -> None:
    with make_client(tile_pixels=64 * 64, large_queue_size=1) as client:
        runtime = client.app.state.runtime
        runtime._large_slots = 1  # one large image is running
        try:
            response = client.post(
                "/stylize",
                params={"style": "alpha"},
                files={"image": ("p.jpg", image_bytes(photo.resize((97, 75))), "image/jpeg")},
            )
        finally:
            runtime._large_slots = 0
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "large_queue_full"
        assert "Retry-After" in response.headers
