"""GET /styles/{id} shows the yardstick a real training run measured."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

from model_store import open_store
from stylenet.model_file import read_info


def test_style_metrics_show_the_yardstick(
    client: TestClient, store_url: str, style_png: bytes, tiny_generator_bytes: bytes
) -> None:
    # The session's tiny generator was trained by train() with the default yardstick.
    metrics = read_info(tiny_generator_bytes).metrics
    store = open_store(store_url)
    store.create(style_png, name="scored", style_id="scored")
    store.publish("scored", tiny_generator_bytes, metrics=metrics)
    body = client.get("/styles/scored").json()
    shown = body["metrics"]["yardstick"]
    assert shown == metrics["yardstick"] == body["versions"][-1]["metrics"]["yardstick"]
    assert math.isfinite(shown["r_mean"]) and shown["images"][0]["r"] is not None
    spec = client.get("/openapi.json").json()
    assert (
        "r_mean"
        in spec["components"]["schemas"]["StyleOut"]["properties"]["metrics"]["description"]
    )
