"""Large images: exact tiled inference in a lane of their own (issue: any size).

The lane's threshold is lowered so small test images take it; the answer must equal the
whole-image forward of the same generator, and the batcher must not see the request.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from service_testing import image_bytes, metric

import service.runtime.runtime as runtime_module
from service.routes.stylize import SpooledResponse
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
        assert response.headers["content-length"] == str(len(response.content))
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
        runtime.large.slots = 1  # one large image is running
        try:
            response = client.post(
                "/stylize",
                params={"style": "alpha"},
                files={"image": ("p.jpg", image_bytes(photo.resize((97, 75))), "image/jpeg")},
            )
        finally:
            runtime.large.slots = 0
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "large_queue_full"
        assert "Retry-After" in response.headers


def test_large_outputs_stream_from_a_spooled_file_that_is_closed_after(
    make_client: Callable[..., AbstractContextManager[Any]],
    photo: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large output goes to a temporary file (on disk past SPOOL_BYTES) and out in
    chunks with its Content-Length; the file is closed once sent, and also when the
    client reads only part of the body and goes away."""
    spools: list[tempfile.SpooledTemporaryFile] = []

    class Recorded(tempfile.SpooledTemporaryFile):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            spools.append(self)

    monkeypatch.setattr(runtime_module.tempfile, "SpooledTemporaryFile", Recorded)
    monkeypatch.setattr(runtime_module, "SPOOL_BYTES", 1024)
    monkeypatch.setattr(SpooledResponse, "CHUNK_BYTES", 4096)
    source = photo.convert("RGB").resize((97, 75))
    request = {
        "params": {"style": "alpha", "format": "png", "max_side": 4096},
        "files": {"image": ("p.png", image_bytes(source, "PNG"), "image/png")},
    }
    with make_client(tile_pixels=64 * 64, tile_side=16) as client:
        tiny = image_bytes(source.resize((40, 30)), "PNG")
        small = client.post(
            "/stylize", params={"style": "alpha"}, files={"image": ("p.png", tiny, "image/png")}
        )
        assert small.status_code == 200 and spools == []  # small outputs: in memory
        with client.stream("POST", "/stylize", **request) as response:
            assert response.status_code == 200
            size = int(response.headers["content-length"])
            chunks = list(response.iter_raw())
        assert size > 4096 and sum(map(len, chunks)) == size
        assert len(chunks) >= 2  # several pieces, not one body
        assert Image.open(io.BytesIO(b"".join(chunks))).size == (97, 75)
        assert len(spools) == 1 and spools[0]._rolled and spools[0].closed  # on disk, closed

        with client.stream("POST", "/stylize", **request) as response:
            next(response.iter_raw())  # one chunk, then hang up
        assert len(spools) == 2
        deadline = time.monotonic() + 10
        while not spools[1].closed:
            assert time.monotonic() < deadline, "the spooled output was never closed"
            time.sleep(0.05)
