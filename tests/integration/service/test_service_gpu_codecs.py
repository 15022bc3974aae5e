"""``STYLIZE_GPU_CODECS`` through the app: the device JPEG path end to end, on CPU.

``gpu_codecs=on`` with ``device=cpu`` runs the same code as CUDA (torchvision.io's
libjpeg-turbo instead of nvJPEG): pixels travel as tensors from decode to encode.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import assert_error, image_bytes

from service.runtime import BlendOptions, InferenceRuntime
from service.runtime.generators import stylize_batch

MakeClient = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture(scope="module")
def small(photo: Image.Image) -> Image.Image:
    return photo.resize((96, 64))


@pytest.fixture(scope="module")
def on(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client(gpu_codecs="on") as client:
        yield client


@pytest.fixture(scope="module")
def off(make_client: MakeClient) -> Iterator[TestClient]:
    with make_client(gpu_codecs="off") as client:
        yield client


def _runtime(client: TestClient) -> InferenceRuntime:
    return client.app.state.runtime  # type: ignore[attr-defined]


def _stylize(client: TestClient, data: bytes, **params: object):
    query = {"style": "alpha", **{k: str(v) for k, v in params.items()}}
    return client.post("/stylize", params=query, content=data)


def _pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.int16)


def test_jpeg_round_trip_on_the_device_path_matches_pil(on, off, small) -> None:
    data = image_bytes(small, "JPEG", quality=90)
    codecs = _runtime(on).codecs
    decodes, encodes = codecs.device_decodes, codecs.device_encodes
    got, want = _stylize(on, data), _stylize(off, data)
    assert got.status_code == want.status_code == 200
    assert got.headers["content-type"] == "image/jpeg"
    assert got.headers["x-image-size"] == "96x64"
    assert (codecs.device_decodes, codecs.device_encodes) == (decodes + 1, encodes + 1)
    assert not _runtime(off).codecs.on_device
    assert np.abs(_pixels(got.content) - _pixels(want.content)).mean() < 1.0


def test_device_decoded_jpeg_answered_as_png_and_pngs_stay_with_pil(on, off, small) -> None:
    data = image_bytes(small, "JPEG", quality=90)
    got, want = _stylize(on, data, format="png"), _stylize(off, data, format="png")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert np.abs(_pixels(got.content) - _pixels(want.content)).mean() < 1.0
    png = image_bytes(small, "PNG")
    got, want = _stylize(on, png), _stylize(off, png)
    assert got.status_code == 200 and got.content == want.content


def test_bad_jpegs_get_the_same_answers(on, small) -> None:
    data = image_bytes(small, "JPEG", quality=90)
    assert_error(_stylize(on, data[: len(data) // 2]), 400, "invalid_image")
    bomb = bytearray(data)
    sof = bomb.index(b"\xff\xc0")
    bomb[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    assert _stylize(on, bytes(bomb)).status_code == 413


def test_concurrent_jpeg_and_png_of_one_shape_share_batches(make_client, small) -> None:
    jpeg, png = image_bytes(small, "JPEG", quality=90), image_bytes(small, "PNG")
    with (
        make_client(gpu_codecs="on", max_batch_size=8, batch_timeout_ms=50) as client,
        ThreadPoolExecutor(6) as pool,
    ):
        answers = list(pool.map(lambda d: _stylize(client, d), [jpeg, png] * 3))
    assert [a.status_code for a in answers] == [200] * 6
    assert max(int(a.headers["x-batch-size"]) for a in answers) > 1


def test_large_lane_takes_device_decoded_pixels(make_client, small) -> None:
    data = image_bytes(small, "JPEG", quality=90)
    with make_client(gpu_codecs="on", tile_pixels=1024, tile_side=32) as client:
        answer = _stylize(client, data)
        assert _runtime(client).codecs.device_decodes == 1
    assert answer.status_code == 200 and answer.headers["x-image-size"] == "96x64"


def test_stylize_batch_takes_tensors_and_keeps_results_on_the_device(on, small) -> None:
    runtime = _runtime(on)
    # Load the style here: the tests above may run after this one (the suite orders a
    # file's tests longest first) or in another process.
    assert _stylize(on, image_bytes(small, "PNG")).status_code == 200
    loaded = next(iter(runtime.cache._entries.values()))
    array = np.asarray(small)
    options = [BlendOptions(), BlendOptions(strength=0.5)]
    host = stylize_batch(loaded, [array, array], options, torch.float32)
    mixed = stylize_batch(
        loaded, [torch.from_numpy(array.copy()), array], options, torch.float32, on_device=True
    )
    assert all(isinstance(t, torch.Tensor) and t.shape == (64, 96, 3) for t in mixed)
    for want, got in zip(host, mixed, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.gpu
def test_cuda_service_decodes_and_encodes_jpeg_on_the_gpu(make_client, off, small) -> None:
    data = image_bytes(small, "JPEG", quality=90)
    with make_client(device="cuda", gpu_codecs="auto") as client:
        answers = [_stylize(client, data) for _ in range(3)]
        codecs = _runtime(client).codecs
        assert codecs.on_device and codecs.device.type == "cuda"
        assert (codecs.device_decodes, codecs.device_encodes) == (3, 3)
    want = _stylize(off, data)
    for got in answers:
        assert got.status_code == 200
        # bf16 on CUDA against float32 on CPU, nvJPEG against libjpeg: close, not equal.
        assert np.abs(_pixels(got.content) - _pixels(want.content)).mean() < 6.0
