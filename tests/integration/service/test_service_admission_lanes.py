"""Admission by time (#24) and the large-image lane's memory, through the HTTP API.

Time-aware admission is checked by mechanism: the lane's rate is the start-up
calibration's (a real forward) or injected (seconds per FLOP, as if measured), the
device is held so nothing finishes, and the assertions are on what is refused at once
and with which figures; nothing is timed. The large-image lane
is charged to the memory budget: its thread is held, so the first image waits in the
lane holding its bytes while a second is refused.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import assert_error, image_bytes, metric
from test_service_runtime import _runtime, _stylize, _until, device_held

from service.runtime import InferenceRuntime, trim
from tests.clip_testing import make_clip

MakeClient = Callable[..., AbstractContextManager[TestClient]]


def _price(runtime: InferenceRuntime, seconds: float, width: int, height: int) -> None:
    """Set the normal lane's rate so a ``width × height`` forward takes ``seconds``."""
    (generator,) = runtime.cache._entries.values()  # the one style these tests load
    runtime.pace.rate.assume(seconds / (generator.flops_per_pixel * width * height))


@contextmanager
def large_lane_held(runtime: InferenceRuntime) -> Iterator[threading.Event]:
    """Keep the large-image lane's thread busy until the block exits."""
    release = threading.Event()
    assert runtime.large.pool is not None
    parked = runtime.large.pool.submit(release.wait, 60)
    try:
        yield release
    finally:
        release.set()
        parked.result(timeout=60)


def test_a_request_the_work_ahead_would_make_late_gets_503_at_once(
    make_client: MakeClient, photo_128: bytes
) -> None:
    with make_client(request_timeout_s=300, max_batch_size=1) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded, measured
        assert runtime.pace.rate.measured >= 1
        with device_held(client) as release, ThreadPoolExecutor(3) as pool:
            first = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.dispatched == 2)  # on the (held) device
            _price(runtime, 100.0, 64, 48)  # as if each 64×48 forward took 100 s
            # 100 s ahead + 100 s of its own fit in the 300 s it has: admitted, queued.
            second = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.depth == 1)
            # 200 s ahead + 100 s: past its deadline, so refused before it waits.
            refused = _stylize(client, photo_128, max_side=64)
            error = assert_error(refused, 503, "would_time_out")
            assert error["lane"] == "stylize"
            assert error["wait_seconds"] == pytest.approx(200.0, abs=0.2)
            assert error["service_seconds"] == pytest.approx(100.0, abs=0.2)
            assert error["seconds_left"] <= 300
            # A fresh request fits once 200 - t + 100 <= 300: at once, so at least 1 s.
            assert int(refused.headers["retry-after"]) >= 1
            # Nothing of it was kept: two requests hold the lane, one waits for the device.
            assert runtime.pace.holders == 2 and runtime.budget.holders == 2
            assert runtime.batcher.depth == 1
            # A smaller image that fits what is left is still admitted.
            small = pool.submit(_stylize, client, photo_128, max_side=32)
            _until(lambda: runtime.pace.holders == 3)
            release.set()
            assert first.result(timeout=60).status_code == 200
            assert second.result(timeout=60).status_code == 200
            assert small.result(timeout=60).status_code == 200
        assert runtime.pace.holders == 0 and runtime.pace.work_in_flight == 0
        text = client.get("/metrics").text
        assert metric(text, "stylize_rejected_total", reason="would_time_out") == 1


def test_a_request_too_slow_even_alone_gets_503_at_once_without_running(
    make_client: MakeClient, photo: Image.Image, photo_128: bytes
) -> None:
    # The start-up calibration (a real reference forward at 64², kept for the process, so
    # every app below starts with the same figure) prices requests before any has run.
    with make_client(pace_calibration_side=64) as client:
        runtime = _runtime(client)
        seconds_per_flop = runtime.pace.rate.seconds_per_flop(1.0)
        assert seconds_per_flop is not None and runtime.pace.rate.measured == 0
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        (generator,) = runtime.cache._entries.values()
    per_pixel = seconds_per_flop * generator.flops_per_pixel
    # A 4:3 photo priced at about 8 s (at most 2048×1536), and a deadline of half of that:
    # the first request after the start could only be answered late. The style is loaded
    # before ready (no warm forward: it would seed the rate), so the deadline is not spent
    # loading it: a fast host prices the photo at ~1 s (CI once answered 504 here).
    pixels = min(2048 * 1536, max(64 * 48, 8.0 / per_pixel))
    width = min(2048, math.ceil(math.sqrt(pixels * 4 / 3)))
    height = width * 3 // 4
    predicted = per_pixel * width * height
    big = image_bytes(photo.resize((width, height)), "JPEG")
    with make_client(
        pace_calibration_side=64,
        request_timeout_s=predicted / 2,
        warm_styles=["alpha"],
        warm_sides=[],
    ) as client:
        runtime = _runtime(client)
        refused = _stylize(client, big, max_side=width)
        error = assert_error(refused, 503, "would_time_out")
        assert error["lane"] == "stylize" and error["wait_seconds"] == 0
        assert error["service_seconds"] == pytest.approx(predicted, abs=0.1)
        # Retrying would not help, a smaller image would: no Retry-After, a max_side.
        assert "retry-after" not in refused.headers
        assert (
            16 <= error["max_side"] < width
            and f"max_side={error['max_side']}" in (error["message"])
        )
        # Refused before anything ran: no forward measured, nothing dispatched, no hold.
        assert runtime.pace.rate.measured == 0 and runtime.batcher.dispatched == 0
        assert runtime.pace.holders == 0 and runtime.budget.holders == 0
        text = client.get("/metrics").text
        assert metric(text, "stylize_rejected_total", reason="would_time_out") == 1
        assert metric(text, "stylize_rejected_total", reason="timeout") == 0


def test_a_clips_frames_in_flight_are_work_ahead_of_a_still_image(
    make_client: MakeClient, photo_128: bytes
) -> None:
    with make_client(request_timeout_s=300, clip_batch_frames=4) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        _price(runtime, 100.0, 64, 48)  # as if each 64×48 image or frame took 100 s
        clip = make_clip("mp4", frames=6, width=64, height=48)
        with device_held(client) as release, ThreadPoolExecutor(1) as pool:
            answer = pool.submit(
                client.post,
                "/stylize",
                params={"style": "alpha"},
                content=clip,
                headers={"content-type": "video/mp4"},
            )
            _until(lambda: runtime.pace.holders == 1)  # the clip's first 4 frames
            assert runtime.pace.ahead_seconds() == pytest.approx(400.0)
            # Alone it would fit its 300 s; behind the clip's 400 s it would not.
            refused = _stylize(client, photo_128, max_side=64)
            error = assert_error(refused, 503, "would_time_out")
            assert error["wait_seconds"] == pytest.approx(400.0, abs=0.2)
            assert error["service_seconds"] == pytest.approx(100.0, abs=0.2)
            # A fresh request fits once 400 - t + 100 <= 300: in 200 s.
            assert int(refused.headers["retry-after"]) in (200, 201)
            release.set()
            assert answer.result(timeout=120).status_code == 200
        assert runtime.pace.holders == 0 and runtime.pace.work_in_flight == 0


def test_without_deadline_admission_the_same_request_waits(
    make_client: MakeClient, photo_128: bytes
) -> None:
    with make_client(request_timeout_s=300, max_batch_size=1, deadline_admission=False) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        with device_held(client) as release, ThreadPoolExecutor(3) as pool:
            first = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.dispatched == 2)
            _price(runtime, 100.0, 64, 48)
            later = [pool.submit(_stylize, client, photo_128, max_side=64) for _ in range(2)]
            _until(lambda: runtime.batcher.depth == 2)  # both queued: nothing refused
            release.set()
            assert [f.result(timeout=60).status_code for f in (first, *later)] == [200] * 3


def test_the_large_lane_is_charged_to_the_memory_budget(
    make_client: MakeClient, photo_128: bytes
) -> None:
    with make_client(tile_pixels=64 * 64, tile_side=32) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        (generator,) = runtime.cache._entries.values()
        footprint = client.portal.call(runtime.large.footprint, generator)
        held = runtime.cost(generator, photo_128, 128, 96).held_bytes
        cost = runtime.large.cost(footprint, held, 128, 96)
    assert cost.large and cost.pixels == 0 and cost.working_bytes > held
    # One large image fits (its held bytes and its tiled forward); a second's held bytes do not.
    limit = 2 * cost.held_bytes + cost.working_bytes - 1
    with make_client(tile_pixels=64 * 64, tile_side=32, inflight_bytes=limit) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        with large_lane_held(runtime) as release, ThreadPoolExecutor(1) as pool:
            first = pool.submit(_stylize, client, photo_128, max_side=128)
            _until(lambda: runtime.large.slots == 1)
            assert runtime.budget.in_flight_bytes == cost.held_bytes + cost.working_bytes
            assert runtime.budget.in_flight == 0  # no pixels: not the batcher's device time
            refused = _stylize(client, photo_128, max_side=128)
            error = assert_error(refused, 429, "memory_budget")
            assert error["bytes"] == cost.held_bytes + cost.working_bytes
            # The lane had room by count (large_queue_size 2): memory refused it.
            assert runtime.large.slots == 1
            release.set()
            answered = first.result(timeout=120)
            assert answered.status_code == 200 and answered.headers["x-image-size"] == "128x96"
        assert runtime.budget.holders == 0 and runtime.budget.in_flight_bytes == 0
        assert runtime.large.slots == 0 and runtime.large.pace.holders == 0
        assert runtime.large.pace.rate.measured == 1  # the tiled forward was timed


def test_the_large_lane_admits_by_time_too(make_client: MakeClient, photo_128: bytes) -> None:
    with make_client(tile_pixels=64 * 64, tile_side=32, large_request_timeout_s=600) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        (generator,) = runtime.cache._entries.values()
        pace = runtime.large.pace
        with large_lane_held(runtime) as release, ThreadPoolExecutor(1) as pool:
            first = pool.submit(_stylize, client, photo_128, max_side=128)
            _until(lambda: pace.holders == 1)
            # As if a tiled 128×96 took 400 s: 400 ahead + 400 is past the 600 s it has.
            pace.rate.assume(400.0 / (generator.flops_per_pixel * 128 * 96))
            refused = _stylize(client, photo_128, max_side=128)
            error = assert_error(refused, 503, "would_time_out")
            assert error["lane"] == "large-image"
            assert error["wait_seconds"] == pytest.approx(400.0, abs=0.2)
            # A fresh request fits once 400 - t + 400 <= 600: in 200 s.
            assert int(refused.headers["retry-after"]) in (200, 201)  # ceil of float seconds
            assert runtime.large.slots == 1 and runtime.budget.holders == 1
            release.set()
            assert first.result(timeout=120).status_code == 200
        assert pace.holders == 0 and runtime.large.slots == 0


@pytest.mark.skipif(not trim.available(), reason="malloc_trim needs Linux with glibc")
def test_the_heap_is_trimmed_when_a_big_burst_ends(
    make_client: MakeClient, photo_128: bytes
) -> None:
    with make_client(trim_after_bytes=1) as client:  # every request is "big"
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        _until(lambda: runtime.trims == 1)
    with make_client(trim_after_bytes=0) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        assert runtime.budget.holders == 0 and runtime.trims == 0
