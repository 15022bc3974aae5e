"""Every bad input of issue #5 gets its status and a JSON error body; the service stays up."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile
from service_testing import (
    BROKEN_STYLE,
    PENDING_STYLE,
    assert_error,
    http_scope,
    image_bytes,
    png_bomb,
)

LIMIT = 300_000


@pytest.fixture(scope="module")
def client(make_client: Callable[..., AbstractContextManager[TestClient]]) -> Iterator[TestClient]:
    with make_client(max_upload_bytes=LIMIT, max_pixels=8_000_000, max_side_limit=1024) as c:
        yield c


def _raw(client: TestClient, data: bytes, mime: str = "image/jpeg", **params: object):
    query = {"style": "alpha", "max_side": "32", **{k: str(v) for k, v in params.items()}}
    return client.post("/stylize", params=query, content=data, headers={"content-type": mime})


def _multipart(client: TestClient, data: bytes, mime: str = "image/jpeg", **fields: object):
    form = {"style": "alpha", "max_side": "32", **{k: str(v) for k, v in fields.items()}}
    return client.post("/stylize", files={"image": ("x", data, mime)}, data=form)


def test_not_an_image(client: TestClient):
    assert_error(_raw(client, b"hello, I am text" * 10), 400, "not_an_image")
    assert_error(_multipart(client, b"%PDF-1.7 not an image"), 400, "not_an_image")


def test_truncated_images(client: TestClient, photo: Image.Image):
    jpeg = image_bytes(photo, "JPEG")
    png = image_bytes(photo.resize((128, 128)), "PNG")
    assert_error(_raw(client, jpeg[: len(jpeg) // 2]), 400, "invalid_image")
    assert_error(_raw(client, png[: len(png) // 2], "image/png"), 400, "invalid_image")
    assert_error(_raw(client, png[:40], "image/png"), 400, "invalid_image")


def test_zero_byte_body(client: TestClient):
    assert_error(_raw(client, b""), 400, "empty_image")
    assert_error(_multipart(client, b""), 400, "empty_image")


def test_decompression_bomb_is_refused_from_its_header(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    bomb = png_bomb(20_000)
    assert len(bomb) < 100_000  # 400 megapixels in a few dozen KB
    decoded = []
    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im) or load(im))
    error = assert_error(_raw(client, bomb, "image/png"), 413, "too_many_pixels")
    assert not decoded  # refused from the header: not a pixel decoded
    assert error["limit"] == 8_000_000


def test_image_over_the_pixel_limit(client: TestClient):
    big = Image.new("RGB", (4000, 2500))  # 10 MP > 8 MP limit, tiny as PNG
    r = _raw(client, image_bytes(big, "PNG"), "image/png")
    error = assert_error(r, 413, "too_many_pixels")
    assert (error["width"], error["height"], error["limit"]) == (4000, 2500, 8_000_000)


def test_body_over_the_byte_limit_with_content_length(client: TestClient):
    error = assert_error(_raw(client, b"\xff\xd8\xff" + b"\0" * LIMIT), 413, "payload_too_large")
    assert error["limit"] == LIMIT


def test_body_over_the_byte_limit_streamed_without_length(client: TestClient):
    # Driven at the ASGI level: TestClient would buffer the whole body before sending.
    chunk, pulled, sent = 64 * 1024, 0, []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": pulled < 100}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-type", b"image/jpeg"), (b"transfer-encoding", b"chunked")]
    scope = http_scope("POST", "/stylize", "style=alpha", headers)
    client.portal.call(client.app, scope, receive, send)
    assert sent[0]["status"] == 413
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["error"]["code"] == "payload_too_large"
    assert (pulled - 1) * chunk <= LIMIT  # stopped reading at the limit, not at the end


def test_multipart_over_the_byte_limit(client: TestClient):
    assert_error(_multipart(client, b"\xff\xd8\xff" + b"\0" * LIMIT), 413, "payload_too_large")


def test_unsupported_formats(client: TestClient, photo: Image.Image):
    small = photo.resize((64, 64))
    # (A GIF is a clip since issue 29: tests/integration/service/test_service_clips.py.)
    error = assert_error(
        _raw(client, image_bytes(small, "ICO"), "application/octet-stream"),
        415,
        "unsupported_media_type",
    )
    assert "ico" in error["message"]
    error = assert_error(
        _multipart(client, image_bytes(small, "BMP"), "image/bmp"), 415, "unsupported_media_type"
    )
    assert error["format"] == "bmp"
    tiff = image_bytes(small, "TIFF")
    assert_error(_raw(client, tiff, "application/octet-stream"), 415, "unsupported_media_type")


def test_unsupported_content_type(client: TestClient, photo_jpeg: bytes):
    assert_error(_raw(client, photo_jpeg, "text/plain"), 415, "unsupported_media_type")


def test_unknown_style(client: TestClient, photo_jpeg: bytes):
    error = assert_error(_raw(client, photo_jpeg, style="no-such-style"), 404, "style_not_found")
    assert error["style_id"] == "no-such-style"


def test_style_not_ready_yet(client: TestClient, photo_jpeg: bytes):
    error = assert_error(_raw(client, photo_jpeg, style=PENDING_STYLE), 409, "style_not_ready")
    assert error["status"] == "queued"
    assert error["style_id"] == PENDING_STYLE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("strength", "2"),
        ("strength", "strong"),
        ("format", "tiff"),
        ("max_side", "8"),
        ("quality", "0"),
        ("version", "0"),
        ("preserve_color", "maybe"),
        ("style", "../etc"),
        ("strenght", "0.5"),  # a typo is an error, not silently ignored
    ],
)
def test_invalid_options(client: TestClient, photo_jpeg: bytes, field: str, value: str):
    error = assert_error(_raw(client, photo_jpeg, **{field: value}), 422, "invalid_request")
    assert field in error["message"]
    assert error["details"][0]["loc"][-1] == field
    assert_error(_multipart(client, photo_jpeg, **{field: value}), 422, "invalid_request")


def test_max_side_over_the_configured_limit(client: TestClient, photo_jpeg: bytes):
    error = assert_error(_raw(client, photo_jpeg, max_side=5000), 422, "invalid_option")
    assert error["limit"] == 1024


def test_missing_style_and_missing_image(client: TestClient, photo_jpeg: bytes):
    r = client.post("/stylize", content=photo_jpeg, headers={"content-type": "image/jpeg"})
    assert_error(r, 422, "invalid_request")
    r = client.post("/stylize", data={"style": "alpha"}, files={"other": ("x", b"1", "text/plain")})
    assert_error(r, 422, "missing_image")


def test_image_too_small_for_the_generator(client: TestClient):
    tiny = image_bytes(Image.new("RGB", (8, 8)), "PNG")
    assert_error(_raw(client, tiny, "image/png"), 422, "image_too_small")


def test_corrupt_weights_name_the_style_and_others_keep_working(
    client: TestClient, photo_jpeg: bytes
):
    for _ in range(2):  # not cached as a success, and reported every time
        error = assert_error(
            _raw(client, photo_jpeg, style=BROKEN_STYLE), 500, "weights_checksum_mismatch"
        )
        assert error["style_id"] == BROKEN_STYLE and BROKEN_STYLE in error["message"]
    assert _raw(client, photo_jpeg, style="alpha").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_unknown_route_and_method_are_json(client: TestClient):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/stylize"), 405, "method_not_allowed")
