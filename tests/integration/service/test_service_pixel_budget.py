"""Admission by cost (#24 item 6): the normal lane's budget of decoded pixels in flight.

Images are 128×96 JPEGs asked at ``max_side=64``: each costs 64×48 = 3,072 pixels (the
size after scaling, read from the header), so a budget of 7,680 admits exactly two.
Everything is checked by mechanism: refused while the device is held, the budget back
to zero after success, error and disconnect.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import assert_error, http_scope, image_bytes, metric
from test_service_runtime import _runtime, _stylize, _until, device_held

MakeClient = Callable[..., AbstractContextManager[TestClient]]
COST = 64 * 48


@pytest.fixture(scope="module")
def photo_128(photo: Image.Image) -> bytes:
    return image_bytes(photo.resize((128, 96)), "JPEG")


def test_a_burst_gets_exactly_what_fits_and_429s_at_once(make_client: MakeClient, photo_128: bytes):
    budget = 2 * COST + COST // 2  # room left, but not for a third image
    with make_client(inflight_pixels=budget, max_batch_size=1, queue_size=32) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # generator loaded
        assert runtime.budget.in_flight == 0
        with device_held(client) as release, ThreadPoolExecutor(3) as pool:
            first = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.dispatched == 2)  # on the (held) device
            second = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.depth == 1)  # queued behind it
            assert runtime.budget.in_flight == 2 * COST
            # The queue has 31 free slots, but no pixels: refused while the device is held.
            for _ in range(3):
                refused = _stylize(client, photo_128, max_side=64)
                error = assert_error(refused, 429, "pixel_budget")
                assert int(refused.headers["retry-after"]) >= 1
                assert (error["pixels"], error["in_flight"], error["limit"]) == (
                    COST,
                    2 * COST,
                    budget,
                )
            # A smaller one fits in what is left: charged by its size, not counted.
            small = image_bytes(Image.open(io.BytesIO(photo_128)).resize((32, 24)), "JPEG")
            third = pool.submit(_stylize, client, small)
            _until(lambda: runtime.budget.holders == 3)
            assert runtime.budget.in_flight == 2 * COST + 32 * 24
            assert runtime.batcher.dispatched == 2
            release.set()
            assert first.result(timeout=30).status_code == 200
            assert second.result(timeout=30).status_code == 200
            assert third.result(timeout=30).status_code == 200
        assert runtime.budget.in_flight == 0 and runtime.budget.holders == 0
        text = client.get("/metrics").text
        assert metric(text, "stylize_rejected_total", reason="pixel_budget") == 3


def test_the_budget_comes_back_after_errors(make_client: MakeClient, photo_128: bytes):
    # A budget of one image: a leaked reservation would refuse the next request.
    with make_client(inflight_pixels=COST) as client:
        runtime = _runtime(client)
        truncated = photo_128[: len(photo_128) // 2]  # header fine, pixels missing
        assert_error(_stylize(client, truncated, max_side=64), 400, "invalid_image")
        assert runtime.budget.in_flight == 0
        assert _stylize(client, photo_128, style="nope", max_side=64).status_code == 404
        assert runtime.budget.in_flight == 0
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        assert runtime.budget.in_flight == 0 and runtime.budget.holders == 0


def test_an_image_over_the_whole_budget_is_served_alone(make_client: MakeClient, photo_128: bytes):
    with make_client(inflight_pixels=COST, max_batch_size=1) as client:
        runtime = _runtime(client)
        # 128×96 = 12,288 pixels, four times the budget: served when nothing else is.
        whole = _stylize(client, photo_128, max_side=128)
        assert whole.status_code == 200
        assert whole.headers["x-image-size"] == "128x96"
        with device_held(client) as release, ThreadPoolExecutor(1) as pool:
            small = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.dispatched == 2)
            # Refused before its body is read: not one more pixel fits.
            error = assert_error(_stylize(client, photo_128, max_side=128), 429, "pixel_budget")
            assert "pixels" not in error and error["in_flight"] == COST
            release.set()
            assert small.result(timeout=30).status_code == 200
        assert runtime.budget.in_flight == 0


def test_a_disconnected_client_gives_its_pixels_back(make_client: MakeClient, photo_128: bytes):
    with make_client(inflight_pixels=2 * COST, max_batch_size=1) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        app = client.app
        sent: list[dict] = []

        async def scenario() -> list[int]:
            queued = asyncio.Event()
            messages = [{"type": "http.request", "body": photo_128, "more_body": False}]

            async def receive() -> dict:
                if messages:
                    return messages.pop()
                await queued.wait()  # then the client goes away
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                sent.append(message)

            headers = [(b"content-type", b"image/jpeg")]
            url = "/stylize?style=alpha&max_side=64"
            scope = http_scope("POST", "/stylize", "style=alpha&max_side=64", headers)
            transport = httpx.ASGITransport(app=app)
            seen = []
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                blocker = asyncio.ensure_future(
                    http.post(url, content=photo_128, headers=dict(headers))
                )
                while runtime.batcher.dispatched < 2:
                    await asyncio.sleep(0.005)
                call = asyncio.ensure_future(app(scope, receive, send))
                while runtime.batcher.depth < 1:
                    await asyncio.sleep(0.005)
                seen.append(runtime.budget.in_flight)
                queued.set()
                await asyncio.wait_for(call, 5)
                seen.append(runtime.budget.in_flight)  # only the blocker's left
                release.set()
                assert (await blocker).status_code == 200
            seen.append(runtime.budget.in_flight)
            return seen

        with device_held(client) as release:
            assert client.portal.call(scenario) == [2 * COST, COST, 0]
        assert sent[0]["status"] == 499
