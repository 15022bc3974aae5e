"""POST /stylize with a blend of styles (issue 27): through the real app, store and runtime."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from blend_testing import CHILD, LONE, family, store_url  # noqa: F401 (fixtures)
from PIL import Image
from service_testing import assert_error, image_bytes

from service.demo_styles import DEFAULT_DIR as DEMO_STYLES_DIR
from service.runtime import InferenceRuntime
from service.runtime.blends import BlendKey
from stylenet import image_to_tensor, load_generator
from stylenet.blend import blend_generator_bytes
from stylenet.inference import stylize_tensor


@pytest.fixture(scope="module")
def client(make_client):
    # float32: the answers are compared with the library's float32 forwards.
    with make_client(cpu_dtype="float32") as c:
        yield c


@pytest.fixture(scope="module")
def small_png(photo: Image.Image) -> bytes:
    return image_bytes(photo.resize((96, 72)), "PNG")


def _post(client, image: bytes, **fields: str):
    return client.post(
        "/stylize", params=fields, content=image, headers={"content-type": "image/png"}
    )


def _pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.int16)


def _runtime(client) -> InferenceRuntime:
    return client.app.state.runtime  # type: ignore[no-any-return]


def test_a_blend_serves_the_weighted_average_of_its_styles(client, family, small_png):  # noqa: F811
    _, weights = family
    r = _post(client, small_png, style="a:0.7,b:0.3", format="png")
    assert r.status_code == 200, r.text
    assert r.headers["x-style-id"] == "a:0.7,b:0.3"
    assert r.headers["x-style-version"] == "1,1"
    expected_model, info = load_generator(
        blend_generator_bytes([("a", weights["a"]), ("b", weights["b"])], [0.7, 0.3])
    )
    assert info.metrics["blend"]["parts"][0] == {
        "style": "a",
        "weight": 0.7,
        "sha256": load_generator(weights["a"])[1].sha256,
    }
    photo = image_to_tensor(Image.open(io.BytesIO(small_png)).convert("RGB"))
    with torch.inference_mode():
        expected = stylize_tensor(photo, expected_model, dtype=torch.float32)
    expected_u8 = expected[0].round().permute(1, 2, 0).numpy().astype(np.int16)
    assert np.abs(_pixels(r.content) - expected_u8).max() <= 1
    # Neither parent: the blend is its own image.
    for parent in ("a", "b"):
        alone = _post(client, small_png, style=parent, format="png")
        assert np.abs(_pixels(alone.content) - _pixels(r.content)).max() > 2


def test_the_same_blend_is_built_once(client, small_png: bytes):
    runtime = _runtime(client)
    before = [k for k in runtime.cache._entries if isinstance(k, BlendKey)]
    # 7:3 is 0.7:0.3 after normalization: the same key, the same generator.
    for spec in ("a:0.6,c:0.4", "a:6,c:4", "a:0.6, c:0.4"):
        r = _post(client, small_png, style=spec)
        assert r.status_code == 200, r.text
        assert r.headers["x-style-id"] == "a:0.6,c:0.4"
    blends = [k for k in runtime.cache._entries if isinstance(k, BlendKey)]
    assert len(blends) == len(before) + 1
    (new,) = set(blends) - set(before)
    assert [(key.style_id, weight) for key, weight in new.parts] == [("a", 0.6), ("c", 0.4)]


def test_a_style_started_from_another_blends_through_the_chain(client, small_png: bytes):
    # child started from style a, which started from the base: child and b share the base.
    r = _post(client, small_png, style=f"{CHILD}:0.5,b:0.5")
    assert r.status_code == 200, r.text
    r = _post(client, small_png, style=f"{CHILD},a")  # a parent and its child
    assert r.status_code == 200, r.text


def test_styles_that_share_no_base_are_refused_with_why(client, small_png: bytes):
    for _ in range(2):  # the second answer comes from the remembered refusal
        error = assert_error(
            _post(client, small_png, style=f"a:0.5,{LONE}:0.5"), 422, "styles_incompatible"
        )
        assert error["styles"] == ["a", LONE]
        assert error["reason"] == "lineage"
        assert "share no base" in error["message"]
        assert "trained from scratch" in error["message"]


def test_the_demo_styles_share_nothing(make_client, small_png: bytes, tmp_path):
    url = (tmp_path / "models").as_uri()
    with make_client(model_store=url, demo_styles_dir=DEMO_STYLES_DIR) as demo:
        error = assert_error(
            _post(demo, small_png, style="scream:0.5,starry-night:0.5"), 422, "styles_incompatible"
        )
        assert "share no base" in error["message"]


def test_an_unknown_style_in_a_blend_is_404(client, small_png: bytes):
    error = assert_error(_post(client, small_png, style="a:0.5,nosuch:0.5"), 404, "style_not_found")
    assert error["style_id"] == "nosuch"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("a:0.5,a:0.5", "named twice"),
        ("a:0,b:1", "must be > 0"),
        ("a:1,b:1,c:1,child:1,lone:1", "at most 4"),
        ("a:heavy,b:1", "not a number"),
        ("a;b", "not a style id"),
    ],
)
def test_malformed_blends_say_what_is_wrong(client, small_png: bytes, spec: str, says: str):
    error = assert_error(_post(client, small_png, style=spec), 422, "invalid_request")
    assert says in error["message"]
    assert error["details"][0]["loc"][-1] == "style"


def test_a_version_pins_one_style_not_a_blend(client, small_png: bytes):
    error = assert_error(_post(client, small_png, style="a,b", version="1"), 422, "invalid_option")
    assert error["field"] == "style"


def test_a_style_says_where_it_started(client, family):  # noqa: F811
    _, weights = family
    base = client.get("/styles/a").json()["start"]
    assert base["kind"] == "base" and base["name"] == "tiny"
    assert base["shares_convolutions"] is True
    assert client.get("/styles/b").json()["start"]["sha256"] == base["sha256"]
    child = client.get(f"/styles/{CHILD}").json()["start"]
    assert (child["kind"], child["style_id"], child["version"]) == ("style", "a", 1)
    assert child["sha256"] == load_generator(weights["a"])[1].sha256
    lone = client.get(f"/styles/{LONE}").json()["start"]
    assert (lone["kind"], lone["shares_convolutions"]) == ("scratch", False)
    listed = {s["id"]: s["start"] for s in client.get("/styles").json()["items"]}
    assert listed["a"] == base


def test_deleting_a_style_drops_its_blends(client, small_png: bytes):
    # Both blends here: under xdist the module's other tests may run in another process.
    assert _post(client, small_png, style="a:0.7,b:0.3").status_code == 200
    assert _post(client, small_png, style="b:0.2,c:0.8").status_code == 200
    runtime = _runtime(client)
    runtime.forget_style("c")
    assert not [k for k in runtime.cache._entries if isinstance(k, BlendKey) and k.mentions("c")]
    assert [k for k in runtime.cache._entries if isinstance(k, BlendKey) and k.mentions("a")]
