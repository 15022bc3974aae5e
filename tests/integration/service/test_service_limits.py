"""Safe to expose (issue 23, item 3): training quota, stylize rate limit, owners and admins.

Real Redis (the session's redis-server); every test uses keys of its own, so the counts
that Redis keeps per key never cross between tests. No worker listens to the service's
queue here, so a created style stays queued and holds its slot until it is canceled or
deleted; a real worker ends a training in ``test_a_slot_is_freed_when_its_training_ends``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import worker_harness
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis_server import free_port
from service_testing import PENDING_STYLE, TEST_HOSTS, assert_error, image_bytes, wait_ready
from worker_harness import TINY

from service import ServiceSettings, create_app, estimate
from service.auth import key_id
from service.limits import StylizeRateLimiter, TrainingQuota
from stylenet import TrainParams
from stylenet.cost import SPEED_KEY, DeviceSpeed, estimate_seconds

MakeClient = Callable[..., AbstractContextManager[TestClient]]
PARAMS = {"iterations": 50, "image_size": 64, "style_size": 64, "width": 0.5}
SPEED = DeviceSpeed("cpu", ((1.0, 0.05), (700.0, 3.0)), 8.0, 1.0e9)


def _key(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create(client: TestClient, style_png: bytes, key: str, params: str | None = None) -> Any:
    data = {"name": "quota test"} | ({"params": params} if params else {})
    files = {"image": ("s.png", style_png, "image/png")}
    return client.post("/styles", files=files, data=data, headers=_bearer(key))


def _stylize(client: TestClient, png: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/stylize",
        params={"style": "alpha"},
        content=png,
        headers={"content-type": "image/png", **(headers or {})},
    )


@pytest.fixture(scope="module")
def small_png(photo: Image.Image) -> bytes:
    return image_bytes(photo.resize((32, 32)), "PNG")


def test_a_third_queued_training_of_a_key_gets_429(make_client: MakeClient, style_png: bytes):
    one, two, admin = _key("user-one"), _key("user-two"), _key("admin")
    with make_client(api_keys=[one, two], admin_keys=[admin]) as client:
        first, second = (_create(client, style_png, one) for _ in range(2))
        assert first.status_code == second.status_code == 202, second.text
        refused = _create(client, style_png, one)
        error = assert_error(refused, 429, "training_quota")
        assert int(refused.headers["retry-after"]) >= 1
        assert error["reason"] == "trainings" and error["limit"] == 2
        assert sorted(error["active"]) == sorted([first.json()["id"], second.json()["id"]])
        # Another key, and an admin key, are not held back by the first key's trainings.
        assert _create(client, style_png, two).status_code == 202
        assert _create(client, style_png, admin).status_code == 202
        # Retraining is a training too: a canceled style of the key, retrained at the limit.
        third_of_two = _create(client, style_png, two).json()["id"]
        client.post(f"/styles/{third_of_two}/cancel", headers=_bearer(two))
        assert _create(client, style_png, two).status_code == 202
        assert_error(
            client.post(f"/styles/{third_of_two}/train", headers=_bearer(two)),
            429,
            "training_quota",
        )


def test_canceling_or_deleting_a_training_frees_its_slot(make_client: MakeClient, style_png: bytes):
    key = _key("user")
    with make_client(api_keys=[key], trainings_per_key=1) as client:
        sid = _create(client, style_png, key).json()["id"]
        assert_error(_create(client, style_png, key), 429, "training_quota")
        canceled = client.post(f"/styles/{sid}/cancel", headers=_bearer(key))
        assert canceled.status_code == 200
        created = _create(client, style_png, key)  # the canceled job's slot is free
        assert created.status_code == 202, created.text
        assert_error(_create(client, style_png, key), 429, "training_quota")
        assert (
            client.delete(f"/styles/{created.json()['id']}", headers=_bearer(key)).status_code
            == 204
        )
        assert _create(client, style_png, key).status_code == 202
        # Retraining the canceled style takes the one slot, which is held again.
        assert_error(
            client.post(f"/styles/{sid}/train", headers=_bearer(key)), 429, "training_quota"
        )


def test_a_slot_is_freed_when_its_training_ends(
    tmp_path: Path, redis_url: str, content_dir: Path, style_png: bytes
):
    """A real worker trains the style to ready; the key may then start another."""
    key = _key("user")
    with worker_harness.worker_env(tmp_path, redis_url, content_dir) as env:
        settings = ServiceSettings(
            model_store=env.env["STYLIZE_MODEL_STORE"],
            redis_url=redis_url,
            training_queue=env.env["STYLIZE_TRAINING_QUEUE"],
            device="cpu",
            warm_styles=[],
            api_keys=[key],
            trainings_per_key=1,
            allowed_hosts=TEST_HOSTS,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            wait_ready(client)
            params = '{"iterations": 2, ' + ", ".join(f'"{k}": {v}' for k, v in TINY.items()) + "}"
            first = _create(client, style_png, key, params)
            assert first.status_code == 202, first.text
            assert_error(_create(client, style_png, key, params), 429, "training_quota")
            env.start_worker()
            env.wait_status(first.json()["id"], "ready", timeout=180)
            # RQ records the job finished a moment after the style is ready.
            created = worker_harness.wait_for(
                lambda: (r := _create(client, style_png, key, params)).status_code == 202 and r,
                timeout=30,
                what="the slot of the finished training",
                poll=0.2,
            )
            assert created.json()["owner"] == key_id(key)
            client.post(f"/styles/{created.json()['id']}/cancel", headers=_bearer(key))


@pytest.fixture
def published_speed(redis_url: str) -> Iterator[DeviceSpeed]:
    """A training speed in Redis, as a worker publishes it (removed afterwards)."""
    connection = Redis.from_url(redis_url)
    connection.hset(SPEED_KEY, "host-limits:cpu", json.dumps(SPEED.to_dict()))
    estimate._cache.clear()
    yield SPEED
    connection.delete(SPEED_KEY)
    estimate._cache.clear()
    connection.close()


def test_the_daily_budget_is_charged_from_the_estimate(
    make_client: MakeClient, style_png: bytes, published_speed: DeviceSpeed
):
    key = _key("user")
    cost = estimate_seconds(TrainParams.from_dict(PARAMS), published_speed)
    budget = 2.5 * cost
    with make_client(api_keys=[key], training_budget_s=budget, trainings_per_key=0) as client:
        ids = []
        for _ in range(2):
            created = _create(client, style_png, key, json.dumps(PARAMS))
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
        refused = _create(client, style_png, key, json.dumps(PARAMS))
        error = assert_error(refused, 429, "training_quota")
        assert error["reason"] == "budget"
        assert error["spent_s"] == pytest.approx(2 * cost, abs=0.2)
        assert 1 <= int(refused.headers["retry-after"]) <= 86_400  # the next UTC day
        # Canceling does not give back what a started training was charged.
        client.post(f"/styles/{ids[0]}/cancel", headers=_bearer(key))
        assert_error(_create(client, style_png, key, json.dumps(PARAMS)), 429, "training_quota")
        # A training that alone costs more than the budget could never start: 422.
        big = json.dumps({**PARAMS, "iterations": 50 * PARAMS["iterations"]})
        assert_error(_create(client, style_png, key, big), 422, "training_too_long")


def test_retry_after_of_a_full_key_is_its_soonest_training_end(
    make_client: MakeClient, style_png: bytes, published_speed: DeviceSpeed
):
    key = _key("user")
    cost = estimate_seconds(TrainParams.from_dict(PARAMS), published_speed)
    with make_client(api_keys=[key], trainings_per_key=1) as client:
        assert _create(client, style_png, key, json.dumps(PARAMS)).status_code == 202
        refused = _create(client, style_png, key, json.dumps(PARAMS))
        assert_error(refused, 429, "training_quota")
        assert abs(int(refused.headers["retry-after"]) - cost) <= 1.5


def test_stylize_rate_limit_per_key_and_per_address(make_client: MakeClient, small_png: bytes):
    one, two = _key("user-one"), _key("user-two")
    # One token per 100 s: the third request of a burst of two is refused, whatever the
    # machine's speed.
    with make_client(api_keys=[one, two], stylize_rate_per_s=0.01, stylize_burst=2) as client:
        for _ in range(2):
            assert _stylize(client, small_png, _bearer(one)).status_code == 200
        refused = _stylize(client, small_png, _bearer(one))
        error = assert_error(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 100
        assert error["burst"] == 2
        assert _stylize(client, small_png, _bearer(two)).status_code == 200  # its own bucket
        # Without a key (stylize needs none here): one bucket per client address.
        for _ in range(2):
            assert _stylize(client, small_png).status_code == 200
        assert_error(_stylize(client, small_png), 429, "rate_limited")
        metrics = client.get("/metrics").text
        assert 'stylize_rejected_total{reason="rate_limited"} 2.0' in metrics


def test_admin_keys_are_not_rate_limited(make_client: MakeClient, small_png: bytes):
    admin = _key("admin")
    with make_client(admin_keys=[admin], stylize_rate_per_s=0.01, stylize_burst=1) as client:
        for _ in range(3):
            assert _stylize(client, small_png, _bearer(admin)).status_code == 200


def test_only_the_owner_or_an_admin_manages_a_style(make_client: MakeClient, style_png: bytes):
    owner, other, admin = _key("owner"), _key("other"), _key("admin")
    with make_client(api_keys=[owner, other], admin_keys=[admin]) as client:
        created = _create(client, style_png, owner)
        sid = created.json()["id"]
        assert created.json()["owner"] == key_id(owner)
        assert owner not in created.text  # the record names the key's id, never the key
        assert client.get(f"/styles/{sid}").json()["owner"] == key_id(owner)
        listed = {s["id"]: s["owner"] for s in client.get("/styles").json()["items"]}
        assert listed[sid] == key_id(owner) and listed["alpha"] is None
        for method, path in (
            ("POST", f"/styles/{sid}/cancel"),
            ("POST", f"/styles/{sid}/train"),
            ("DELETE", f"/styles/{sid}"),
        ):
            error = assert_error(
                client.request(method, path, headers=_bearer(other)), 403, "not_owner"
            )
            assert error["style_id"] == sid and "owner or an admin key" in error["message"]
        assert client.get(f"/styles/{sid}").json()["status"] == "queued"  # untouched
        r = client.post(f"/styles/{sid}/cancel", headers=_bearer(admin))
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        r = client.post(f"/styles/{sid}/train", headers=_bearer(admin))
        assert r.status_code == 202 and r.json()["owner"] == key_id(owner)  # still the owner's
        assert client.delete(f"/styles/{sid}", headers=_bearer(admin)).status_code == 204
        # A style without an owner (demo styles, styles made while the API was open).
        error = assert_error(
            client.delete(f"/styles/{PENDING_STYLE}", headers=_bearer(owner)), 403, "not_owner"
        )
        assert "only an admin key" in error["message"]
        assert client.delete(f"/styles/{PENDING_STYLE}", headers=_bearer(admin)).status_code == 204


def test_an_open_api_has_no_owners_and_no_quota(make_client: MakeClient, style_png: bytes):
    with make_client(trainings_per_key=1) as client:
        files = {"image": ("s.png", style_png, "image/png")}
        created = [client.post("/styles", files=files, data={"name": "open"}) for _ in range(2)]
        assert [r.status_code for r in created] == [202, 202]
        assert created[0].json()["owner"] is None
        for r in created:
            assert client.delete(f"/styles/{r.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    "overrides",
    [
        {"admin_keys": ["short"]},
        {"trainings_per_key": -1},
        {"training_budget_s": -1},
        {"stylize_rate_per_s": -0.5},
    ],
)
def test_invalid_limit_settings_fail_fast(overrides: dict[str, Any]):
    with pytest.raises(ValidationError):
        ServiceSettings(**overrides)


def test_admin_keys_alone_turn_auth_on_and_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    secret = tmp_path / "admin_keys"
    secret.write_text("admin-key-one-1\n\nadmin-key-two-2\n")
    monkeypatch.delenv("STYLIZE_ADMIN_KEYS", raising=False)
    monkeypatch.setenv("STYLIZE_ADMIN_KEYS_FILE", str(secret))
    settings = ServiceSettings(stylize_requires_key=True)
    assert [k.get_secret_value() for k in settings.admin_keys] == [
        "admin-key-one-1",
        "admin-key-two-2",
    ]
    assert settings.auth_enabled and not settings.api_keys


def test_concurrent_admissions_never_exceed_the_limit(redis_url: str):
    """Sixteen processes' worth of requests at once: exactly ``limit`` slots are taken."""
    owner = key_id(_key("racer"))
    connection = Redis.from_url(redis_url)
    quota = TrainingQuota(connection, limit=2, budget_s=0)
    barrier = threading.Barrier(16)

    def admit(i: int) -> bool:
        barrier.wait()
        return quota.acquire(owner, f"race{i}") is None

    with ThreadPoolExecutor(16) as pool:
        admitted = sum(pool.map(admit, range(16)))
    assert admitted == 2
    refusal = quota.acquire(owner, "race-late")
    assert refusal is not None and len(refusal.active) == 2
    # A slot given back (its enqueue failed) is free at once.
    quota.release(owner, refusal.active[0])
    assert quota.acquire(owner, "race-late") is None
    connection.close()


def test_the_rate_limit_lets_requests_through_while_redis_is_down():
    async def scenario() -> None:
        client = AsyncRedis.from_url(
            f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5, socket_timeout=0.5
        )
        limiter = StylizeRateLimiter(client, rate_per_s=0.01, burst=1)
        for _ in range(3):
            await limiter.check("someone")  # no RateLimited: stylizing needs no Redis
        assert limiter._paused_until > time.monotonic()  # and Redis is left alone a while
        await limiter.close()

    asyncio.run(scenario())
