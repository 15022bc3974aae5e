"""POST /stylize on good input: formats, sizes, EXIF, alpha, options, headers."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import assert_error, image_bytes


def _post(client: TestClient, data: bytes, mime: str = "image/jpeg", **fields: object):
    form = {k: str(v) for k, v in fields.items()}
    return client.post("/stylize", files={"image": ("in", data, mime)}, data=form)


def _open(response) -> Image.Image:
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def test_multipart_jpeg_gives_jpeg_of_the_resized_size(client: TestClient, photo_jpeg: bytes):
    r = _post(client, photo_jpeg, style="alpha", max_side=64)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    out = _open(r)
    assert out.format == "JPEG" and out.size == (64, 64)
    assert r.headers["x-style-id"] == "alpha"
    assert r.headers["x-style-version"] == "1"
    assert int(r.headers["x-batch-size"]) >= 1
    timing = r.headers["server-timing"]
    for phase in ("decode", "queue", "infer", "encode", "total"):
        assert f"{phase};dur=" in timing


def test_the_output_is_stylized(client: TestClient, photo: Image.Image):
    small = photo.resize((64, 64))
    r = _post(client, image_bytes(small, "PNG"), "image/png", style="alpha")
    out = np.asarray(_open(r), dtype=np.float32)
    assert np.abs(out - np.asarray(small, dtype=np.float32)).mean() > 5


def test_raw_body_png_returns_png_and_keeps_odd_sizes(client: TestClient, photo: Image.Image):
    data = image_bytes(photo.resize((75, 49)), "PNG")
    r = client.post(
        "/stylize", params={"style": "alpha"}, content=data, headers={"content-type": "image/png"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert _open(r).size == (75, 49)


def test_output_format_and_quality_options(client: TestClient, photo_jpeg: bytes):
    small = _post(client, photo_jpeg, style="alpha", max_side=96, format="webp", quality=10)
    large = _post(client, photo_jpeg, style="alpha", max_side=96, format="webp", quality=95)
    assert small.headers["content-type"] == large.headers["content-type"] == "image/webp"
    assert _open(small).format == "WEBP" and _open(small).size == (96, 96)
    assert len(small.content) < len(large.content)
    png = _post(client, photo_jpeg, style="alpha", max_side=32, format="png")
    assert _open(png).format == "PNG"


def test_non_square_images_are_downscaled_keeping_aspect(client: TestClient, photo: Image.Image):
    data = image_bytes(photo.resize((300, 200)), "WEBP", quality=90)
    r = _post(client, data, "image/webp", style="alpha", max_side=96)
    assert r.headers["content-type"] == "image/webp"
    assert _open(r).size == (96, 64)


def test_exif_orientation_is_honoured(client: TestClient, photo: Image.Image):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise (portrait)
    data = image_bytes(photo.resize((80, 40)), "JPEG", exif=exif.tobytes())
    r = _post(client, data, style="alpha")
    assert r.status_code == 200, r.text
    assert _open(r).size == (40, 80)


def test_alpha_is_composited_not_black(client: TestClient):
    rgba = Image.new("RGBA", (48, 48), (0, 0, 0, 0))  # fully transparent
    r = _post(client, image_bytes(rgba, "PNG"), "image/png", style="alpha", strength=0)
    out = _open(r)
    assert out.mode == "RGB" and out.size == (48, 48)
    assert np.asarray(out).min() == 255  # transparent -> white, strength 0 returns it


def test_strength_zero_returns_the_input(client: TestClient, photo: Image.Image):
    small = photo.resize((64, 48))
    r = _post(client, image_bytes(small, "PNG"), "image/png", style="alpha", strength=0.0)
    diff = np.abs(np.asarray(_open(r), np.int16) - np.asarray(small, np.int16))
    assert diff.max() <= 1


def test_preserve_color_keeps_the_input_chroma(client: TestClient, photo: Image.Image):
    small = photo.resize((64, 64))
    data = image_bytes(small, "PNG")
    plain = np.asarray(_open(_post(client, data, "image/png", style="alpha")).convert("YCbCr"))
    kept = _open(_post(client, data, "image/png", style="alpha", preserve_color="true"))
    kept = np.asarray(kept.convert("YCbCr"), np.float32)
    source = np.asarray(small.convert("YCbCr"), np.float32)
    chroma_error = np.abs(kept[..., 1:] - source[..., 1:]).mean()
    assert chroma_error < np.abs(plain[..., 1:].astype(np.float32) - source[..., 1:]).mean()
    assert chroma_error < 6


def test_pinned_version(client: TestClient, photo_jpeg: bytes):
    r = _post(client, photo_jpeg, style="beta", version=1, max_side=32)
    assert r.status_code == 200 and r.headers["x-style-version"] == "1"
    missing = _post(client, photo_jpeg, style="beta", version=7, max_side=32)
    assert_error(missing, 404, "version_not_found")


def test_query_options_with_multipart_image(client: TestClient, photo_jpeg: bytes):
    r = client.post(
        "/stylize",
        params={"style": "alpha", "max_side": "40"},
        files={"image": ("in.jpg", photo_jpeg, "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    assert _open(r).size == (40, 40)


def test_openapi_documents_the_endpoint(client: TestClient):
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/stylize"]["post"]
    content = op["requestBody"]["content"]
    assert "multipart/form-data" in content and "image/jpeg" in content
    assert {p["name"] for p in op["parameters"]} >= {"style", "strength", "max_side", "format"}
    assert "429" in op["responses"] and "413" in op["responses"]
