"""Clips through ``POST /stylize`` (issue 29): formats, audio, limits, bad input, no leftovers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from service_testing import assert_error

from tests.clip_testing import clip_summary, huge_gif_header, make_clip


@pytest.fixture(scope="module")
def client(make_client: Callable[..., AbstractContextManager[TestClient]]) -> Iterator[TestClient]:
    limits = {
        "clip_max_seconds": 5,
        "clip_max_frames": 10,
        "clip_max_frame_pixels": 512 * 512,
        "clip_batch_frames": 3,
    }
    with make_client(**limits) as c:
        yield c


def _post(client: TestClient, data: bytes, mime: str = "video/mp4", **params: object):
    query = {"style": "alpha", **{k: str(v) for k, v in params.items()}}
    return client.post("/stylize", params=query, content=data, headers={"content-type": mime})


def _scratch() -> set[str]:
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("stylize-")}


def test_mp4_with_audio_comes_back_as_mp4_with_the_audio(client: TestClient) -> None:
    source = make_clip("mp4", frames=7, width=64, height=48, audio=True)
    response = _post(client, source)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["x-clip-frames"] == "7"
    assert response.headers["x-clip-audio"] == "copied"
    made, given = clip_summary(response.content), clip_summary(source)
    assert made["frames"] == 7 and made["size"] == (64, 48)
    assert made["audio_packets"] == given["audio_packets"]


@pytest.mark.parametrize("temporal", ["per_frame", "shared", "flow"])
def test_gif_to_webm_multipart_in_each_mode(client: TestClient, temporal: str) -> None:
    form = {"style": "alpha", "format": "webm", "temporal": temporal, "max_side": "32"}
    files = {"image": ("clip.gif", make_clip("gif", frames=4), "image/gif")}
    response = client.post("/stylize", files=files, data=form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/webm"
    made = clip_summary(response.content)
    assert made["frames"] == 4 and made["size"] == (32, 24)


def test_flow_on_an_h264_clip_and_a_bad_mode(client: TestClient) -> None:
    response = _post(client, make_clip("mp4", frames=5), temporal="flow", format="gif")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    assert clip_summary(response.content)["frames"] == 5
    assert_error(
        _post(client, make_clip("mp4", frames=2), temporal="optical"), 422, "invalid_request"
    )


def test_animated_webp(client: TestClient) -> None:
    response = _post(client, make_clip("webp", frames=3), "application/octet-stream")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"


def test_too_long_a_clip_is_413_before_any_frame(client: TestClient) -> None:
    body = assert_error(_post(client, make_clip("mp4", frames=14, fps=2)), 413, "clip_too_large")
    assert body["field"] == "seconds" and body["limit"] == 5


def test_too_many_frames_counted_in_a_gif(client: TestClient) -> None:
    body = assert_error(
        _post(client, make_clip("gif", frames=12, fps=50), "image/gif"), 413, "clip_too_large"
    )
    assert body["field"] == "frames" and body["limit"] == 10


def test_a_gif_bomb_header_is_413(client: TestClient) -> None:
    body = assert_error(
        _post(client, huge_gif_header(20000, 20000), "image/gif"), 413, "clip_too_large"
    )
    assert body["field"] == "frame_pixels" and body["actual"] == 20000 * 20000


def test_bad_clips_get_4xx_and_leave_nothing(client: TestClient) -> None:
    before = _scratch()
    mp4 = make_clip("mp4", frames=6)
    assert_error(_post(client, mp4[: len(mp4) // 2]), 400, "invalid_clip")
    assert_error(
        _post(client, make_clip("matroska", frames=2), "video/x-matroska"), 415, "unsupported_clip"
    )
    assert_error(_post(client, mp4, format="avi"), 422, "invalid_request")
    assert _scratch() <= before
    assert _post(client, make_clip("mp4", frames=2)).status_code == 200  # still serving
