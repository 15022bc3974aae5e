"""Admission by memory (#24): the normal lane's budget of host bytes in flight.

A request holds its body, decode, image and result for its whole life and, on a CPU,
its forward's activations while that runs; forwards run one at a time, so the memory in
use is the held bytes of all plus the largest forward (``service.runtime.budget``).
Checked by mechanism: refused while the device is held, with the figures it was priced
at; an image whose forward alone is over the budget answered while the device thread is
held (the large-image lane's thread ran it, tiled).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from service_testing import assert_error, metric
from test_service_runtime import _runtime, _stylize, _until, device_held

from service.runtime import InferenceRuntime, calibration
from service.runtime.budget import Cost
from service.runtime.generators import BATCH_BYTES_PER_PIXEL, HOST_SLACK
from stylenet.footprint import forward_bytes_per_pixel

MakeClient = Callable[..., AbstractContextManager[TestClient]]


def _cost(runtime: InferenceRuntime, data: bytes, width: int, height: int) -> Cost:
    (generator,) = runtime.cache._entries.values()  # the one style these tests load
    return runtime.cost(generator, data, width, height)


def test_a_cpu_forward_is_priced_by_its_activations(make_client: MakeClient, photo_128: bytes):
    with make_client() as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        small, large = _cost(runtime, photo_128, 64, 48), _cost(runtime, photo_128, 128, 96)
    # The forward's bytes grow with the pixels; it is most of what a request costs.
    assert small.working_bytes > small.held_bytes - len(photo_128) > 0
    assert large.working_bytes == pytest.approx(4 * small.working_bytes, rel=0.01)
    assert small.pixels == 64 * 48


def test_requests_past_the_memory_budget_get_429_at_once(make_client: MakeClient, photo_128: bytes):
    with make_client() as client:
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        cost = _cost(_runtime(client), photo_128, 64, 48)
    # Two requests hold 2 × held + one forward (they run one at a time); a third does not fit.
    limit = 2 * cost.held_bytes + cost.working_bytes + cost.held_bytes // 2
    with make_client(inflight_bytes=limit, max_batch_size=1, queue_size=32) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        assert runtime.budget.in_flight_bytes == 0
        with device_held(client) as release, ThreadPoolExecutor(2) as pool:
            first = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.dispatched == 2)  # on the (held) device
            second = pool.submit(_stylize, client, photo_128, max_side=64)
            _until(lambda: runtime.batcher.depth == 1)  # queued behind it
            assert runtime.budget.in_flight_bytes == 2 * cost.held_bytes + cost.working_bytes
            # Pixels and queue places are left: memory is not.
            for _ in range(2):
                refused = _stylize(client, photo_128, max_side=64)
                error = assert_error(refused, 429, "memory_budget")
                assert int(refused.headers["retry-after"]) >= 1
                assert error["limit_bytes"] == limit
                assert error["bytes"] == cost.held_bytes + cost.working_bytes
            release.set()
            assert first.result(timeout=30).status_code == 200
            assert second.result(timeout=30).status_code == 200
        assert runtime.budget.in_flight_bytes == 0 and runtime.budget.holders == 0
        text = client.get("/metrics").text
        assert metric(text, "stylize_rejected_total", reason="memory_budget") == 2


def test_an_image_whose_forward_is_over_the_budget_is_tiled(
    make_client: MakeClient, photo_128: bytes
):
    with make_client() as client:
        assert _stylize(client, photo_128, max_side=64).status_code == 200
        cost = _cost(_runtime(client), photo_128, 128, 96)
    # 64×48 fits whole; 128×96 would need more than the budget for its forward alone.
    limit = cost.working_bytes - 1
    with make_client(inflight_bytes=limit, tile_side=32) as client:
        runtime = _runtime(client)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded, whole
        with device_held(client):
            # Answered although the device thread is busy: the large lane's thread ran it,
            # by exact tiled inference, outside the budget.
            whole = _stylize(client, photo_128, max_side=128)
            assert whole.status_code == 200
            assert whole.headers["x-image-size"] == "128x96"
            assert runtime.batcher.dispatched == 1
        assert runtime.budget.holders == 0


def test_the_start_up_calibration_prices_cpu_forwards_by_this_hosts_memory(
    make_client: MakeClient, photo_128: bytes
):
    with make_client(pace_calibration_side=calibration.MIN_MEMORY_SIDE) as client:
        runtime = _runtime(client)
        reference = runtime.pace_reference
        assert reference is not None and reference.flops > 0
        assert runtime.host_slack == max(HOST_SLACK, reference.slack or 0.0)
        assert _stylize(client, photo_128, max_side=64).status_code == 200  # loaded
        (generator,) = runtime.cache._entries.values()
    traced = forward_bytes_per_pixel(generator.info.config, runtime.dtype)
    assert generator.host_bytes_per_pixel == pytest.approx(
        traced * runtime.host_slack + BATCH_BYTES_PER_PIXEL
    )
    # A calibration too small to measure memory keeps the default slack.
    with make_client(pace_calibration_side=64) as client:
        assert _runtime(client).host_slack == HOST_SLACK
