"""Cost before commitment, end to end: the worker calibrates its speed at start, the API
prices a training before it runs and while it runs, and the run refines the speed.

How close the price comes to the real run is a benchmark (bench/estimate_accuracy.py,
docs/TRAINING.md, "Cost before commitment"), never asserted here: a busy machine would fail it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack_testing import running_stack

REPO = Path(__file__).resolve().parents[2]

#: A few seconds of training: long enough to be priced while it runs.
PARAMS = {
    "iterations": 40,
    "image_size": 32,
    "style_size": 32,
    "batch_size": 2,
    "width": 0.5,
    "holdout": 1,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # running_stack calibrates at 32 px (batch 1 and 4): this run's step lies between.
    env = {"STYLIZE_PROGRESS_INTERVAL_S": "1"}
    with running_stack(tmp_path_factory.mktemp("stack"), **env) as (url, _):
        yield url


def _estimate(url: str, params: dict) -> dict:
    response = httpx.post(f"{url}/training/estimate", json={"params": params}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_training_is_priced_before_and_while_it_runs_and_refines_the_speed(stack: str) -> None:
    url = stack
    deadline = time.monotonic() + 300
    while (priced := _estimate(url, PARAMS))["estimated_seconds"] is None:
        assert time.monotonic() < deadline, "the worker never published its training speed"
        time.sleep(1)
    assert priced["speed"]["measured"] is True
    assert priced["speed"]["source"] == "calibration"
    assert len(priced["speed"]["points"]) == 2
    # The default recipe costs far more than this small run, on the same device.
    assert _estimate(url, {})["estimated_seconds"] > 20 * priced["estimated_seconds"]

    with (REPO / "demo_styles/scream/style.jpg").open("rb") as handle:
        created = httpx.post(
            f"{url}/styles",
            files={"image": ("s.jpg", handle, "image/jpeg")},
            data={"name": "priced", "params": json.dumps(PARAMS)},
            timeout=30,
        )
    assert created.status_code == 202, created.text
    style = created.json()
    estimate = style["estimated_seconds"]
    assert estimate is not None and estimate > 0
    seen_while_running = []
    for _ in range(900):  # polls, a second apart: a hang guard, not a measurement
        record = httpx.get(f"{url}/styles/{style['id']}", timeout=10).json()
        if record["status"] in ("ready", "failed", "canceled"):
            break
        seen_while_running.append(record["estimated_seconds"])
        time.sleep(1)
    assert record["status"] == "ready", record
    assert record["estimated_seconds"] is None  # no longer queued or training
    assert seen_while_running and all(s is not None for s in seen_while_running)
    # The price is the calibrated curve's: what the API says is what the cost model gives.
    again = _estimate(url, PARAMS)
    assert again["estimated_seconds"] is not None and again["speed"]["device"]

    # The run refined the published speed (recorded after its publish; the API rereads
    # the published speeds every few seconds).
    deadline = time.monotonic() + 30
    while (speed := _estimate(url, PARAMS)["speed"])["source"] != "runs":
        assert time.monotonic() < deadline, speed
        time.sleep(1)
