"""GET /styles/{id} shows the quality score measured after the publish, and where it started."""

from __future__ import annotations

import io
import math
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from model_store import open_store
from stylenet import TrainParams, load_generator
from stylenet.data import find_images, split_content
from stylenet.model_file import read_info
from stylenet.score import score_generator


def test_style_metrics_show_the_score_once_measured(
    client: TestClient,
    store_url: str,
    style_png: bytes,
    tiny_generator_bytes: bytes,
    content_dir: Path,
) -> None:
    info = read_info(tiny_generator_bytes)
    store = open_store(store_url)
    store.create(style_png, name="scored", style_id="scored")
    store.publish(
        "scored", tiny_generator_bytes, metrics={**info.metrics, "score": {"status": "scoring"}}
    )
    body = client.get("/styles/scored").json()
    assert body["metrics"]["score"] == {"status": "scoring"}
    assert body["metrics"]["init"] == {"kind": "scratch"}

    # A real score of the real generator, recorded as the worker does.
    params = TrainParams.from_dict({**info.train_params, "yardstick_steps": 2})
    held = split_content(find_images(content_dir), params.holdout).held
    generator, _ = load_generator(tiny_generator_bytes)
    painting = Image.open(io.BytesIO(style_png)).convert("RGB")
    score = score_generator(generator, painting, held, params, verified=False, size=64)
    store.set_score("scored", 1, score)
    body = client.get("/styles/scored").json()
    shown = body["metrics"]["score"]
    assert shown == body["versions"][-1]["metrics"]["score"]
    assert shown["status"] == "done" and math.isfinite(shown["r_mean"])
    assert shown["images"][0]["r"] is not None and shown["photos"] == "unverified"
    spec = client.get("/openapi.json").json()
    description = spec["components"]["schemas"]["StyleOut"]["properties"]["metrics"]
    assert "r_mean" in description["description"] and "scoring" in description["description"]
