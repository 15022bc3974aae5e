"""``GET /styles/{id}/export`` and the ``onnxruntime`` backend, through the real app: the
export runs in ONNX Runtime to the service's own float32 answer within one level, is made
once per version (stored beside the weights, same sha256 every time), and the errors."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import onnx
import pytest
from PIL import Image
from service_testing import PENDING_STYLE, assert_error, image_bytes

from model_store import open_store
from stylenet.pixels import image_to_tensor

ort_backend = pytest.importorskip("stylenet.ort_backend")


@pytest.fixture(scope="module")
def float32_client(make_client):
    # The generators in float32 on the CPU, so the service's answer is the export's reference.
    with make_client(cpu_dtype="float32") as client:
        yield client


@pytest.fixture(scope="module")
def odd_photo(photo) -> Image.Image:
    return photo.crop((120, 100, 120 + 93, 100 + 67))  # 93×67: odd sides


def _stylized(client, image: Image.Image) -> np.ndarray:
    r = client.post(
        "/stylize",
        params={"style": "alpha", "format": "png"},
        content=image_bytes(image, "PNG"),
        headers={"content-type": "image/png"},
    )
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)


def test_export_runs_like_the_service_and_is_made_once(
    float32_client, odd_photo, store_url
) -> None:
    r = float32_client.get("/styles/alpha/export", params={"format": "onnx"})
    assert r.status_code == 200, r.text
    sha = hashlib.sha256(r.content).hexdigest()
    assert r.headers["etag"] == f'"{sha}"'
    assert r.headers["content-disposition"] == 'attachment; filename="alpha-v1.onnx"'
    meta = {p.key: p.value for p in onnx.load_from_string(r.content).metadata_props}
    assert (meta["style_id"], meta["style_name"], meta["version"]) == ("alpha", "style alpha", "1")
    (version,) = float32_client.get("/styles/alpha").json()["versions"]
    assert meta["source_sha256"] == version["sha256"]
    again = float32_client.get("/styles/alpha/export")  # format defaults to onnx
    assert again.content == r.content  # stored, not made anew
    stored = open_store(store_url).open_export("alpha", 1, "onnx")
    assert stored is not None and stored[1].sha256 == sha  # beside the weights
    head = float32_client.head("/styles/alpha/export")
    assert head.status_code == 200
    assert head.headers["etag"] == r.headers["etag"] and head.content == b""

    runner = ort_backend.OrtGenerator(r.content, threads=1)
    on_device = ort_backend.stylize_tensor_ort(image_to_tensor(odd_photo), runner)
    ours = on_device[0].round().permute(1, 2, 0).numpy().astype(np.int16)
    served = _stylized(float32_client, odd_photo)
    assert ours.shape == served.shape == (67, 93, 3)
    assert np.abs(ours - served).max() <= 1


def test_float16_export_is_its_own_file(float32_client) -> None:
    full = float32_client.get("/styles/alpha/export")
    half = float32_client.get("/styles/alpha/export", params={"dtype": "float16"})
    assert half.status_code == 200, half.text
    assert half.headers["etag"] != full.headers["etag"]
    assert "alpha-v1-float16.onnx" in half.headers["content-disposition"]


def test_export_errors(float32_client) -> None:
    assert_error(float32_client.get("/styles/nosuchstyle/export"), 404, "style_not_found")
    assert_error(float32_client.get(f"/styles/{PENDING_STYLE}/export"), 409, "style_not_ready")
    r = assert_error(
        float32_client.get("/styles/alpha/export?format=coreml"), 422, "invalid_option"
    )
    assert "coremltools" in r["message"]
    assert_error(float32_client.get("/styles/alpha/export?format=tflite"), 422, "invalid_option")
    assert_error(float32_client.get("/styles/alpha/export?version=9"), 404, "version_not_found")


def test_onnxruntime_backend_serves_what_torch_serves(make_client, odd_photo) -> None:
    with make_client(cpu_dtype="float32", backend="onnxruntime") as client:
        ready = client.get("/readyz").json()
        assert ready["backend"] == "onnxruntime"
        served = _stylized(client, odd_photo)
    with make_client(cpu_dtype="float32") as client:
        assert client.get("/readyz").json()["backend"] == "torch"
        reference = _stylized(client, odd_photo)
    assert np.abs(served - reference).max() <= 1


def test_auto_backend_measures_and_says_why(make_client) -> None:
    with make_client(backend="auto") as client:
        ready = client.get("/readyz").json()
    assert ready["backend"] in ("torch", "onnxruntime")
    assert "onnxruntime float32" in ready["backend_reason"]
    assert "torch" in ready["backend_reason"]
