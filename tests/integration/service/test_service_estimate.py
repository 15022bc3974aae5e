"""``estimated_seconds``: priced from the speed a worker published in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from service_testing import assert_error

from model_store import ModelStore, Progress, Status, open_store
from service import estimate
from stylenet import TrainParams
from stylenet.cost import SPEED_KEY, DeviceSpeed, estimate_seconds

PARAMS = {"iterations": 50, "image_size": 64, "style_size": 64, "width": 0.5}
SPEED = DeviceSpeed("cpu", ((1.0, 0.05), (700.0, 3.0)), 8.0, 1.0e9)


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    connection = Redis.from_url(redis_url)
    connection.delete(SPEED_KEY)
    estimate._cache.clear()
    yield connection
    connection.delete(SPEED_KEY)
    estimate._cache.clear()
    connection.close()


def _publish(redis: Redis, speed: DeviceSpeed, field: str = "host-a:cpu") -> None:
    redis.hset(SPEED_KEY, field, json.dumps(speed.to_dict()))
    estimate._cache.clear()


def _create(client: TestClient, style_png: bytes, params: dict) -> dict:
    response = client.post(
        "/styles",
        files={"image": ("style.png", style_png, "image/png")},
        data={"name": "priced", "params": json.dumps(params)},
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_no_published_speed_means_no_estimate(client: TestClient, redis: Redis, style_png):
    r = client.post("/training/estimate", json={"params": PARAMS})
    assert r.status_code == 200, r.text
    assert r.json() == {"estimated_seconds": None, "speed": {"measured": False}}
    assert _create(client, style_png, PARAMS)["estimated_seconds"] is None


def test_estimates_use_the_newest_published_speed(client: TestClient, redis: Redis, style_png):
    old = DeviceSpeed("cpu", ((1.0, 5.0),), 1.0, 10.0)
    _publish(redis, old, "host-old:cpu")
    _publish(redis, SPEED)
    redis.hset(SPEED_KEY, "host-broken:cpu", b"not json")
    expected = estimate_seconds(TrainParams.from_dict(PARAMS), SPEED)
    r = client.post("/training/estimate", json={"params": PARAMS})
    assert r.status_code == 200, r.text
    assert r.json()["estimated_seconds"] == pytest.approx(expected, abs=0.1)
    assert r.json()["speed"]["measured"] is True and r.json()["speed"]["device"] == "cpu"
    default = client.post("/training/estimate", json={}).json()["estimated_seconds"]
    assert default == pytest.approx(estimate_seconds(TrainParams(), SPEED), abs=0.1)
    assert default > 10 * expected

    created = _create(client, style_png, PARAMS)
    assert created["estimated_seconds"] == pytest.approx(expected, abs=0.1)
    got = client.get(f"/styles/{created['id']}").json()
    assert got["status"] == "queued"
    assert got["estimated_seconds"] == pytest.approx(expected, abs=0.1)


def test_a_training_style_is_priced_from_its_smoothed_eta(
    client: TestClient, redis: Redis, style_png, store_url: str
):
    _publish(redis, SPEED)
    created = _create(client, style_png, PARAMS)
    store: ModelStore = open_store(store_url)
    store.update(created["id"], status=Status.TRAINING, progress=Progress(40, 50, 12.0, 1.0))
    got = client.get(f"/styles/{created['id']}").json()
    params = TrainParams.from_dict(PARAMS)
    fixed = estimate_seconds(params, SPEED, remaining=0)  # run overhead and report
    assert got["estimated_seconds"] == pytest.approx(fixed + 12.0, abs=0.2)


def test_bad_params_get_422(client: TestClient, redis: Redis):
    r = client.post("/training/estimate", json={"params": {"iterations": 0}})
    assert_error(r, 422, "invalid_params")
    r = client.post("/training/estimate", json={"params": {"nope": 1}})
    assert_error(r, 422, "invalid_params")
