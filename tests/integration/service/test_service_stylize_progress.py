"""Progress and stop of a named stylize (issue 26 item 4): GET and DELETE
/stylize/progress/{id}; the large-image lane reports its bands and stops between two.

The lane's threshold is lowered so small test images take it (as in
test_service_large_images.py)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
from PIL import Image
from service_testing import assert_error, image_bytes

MakeClient = Callable[..., AbstractContextManager[Any]]


def _stylize(client: Any, photo: Image.Image, size: int, progress_id: str) -> httpx.Response:
    return client.post(
        "/stylize",
        data={"style": "alpha", "max_side": "4096", "progress_id": progress_id},
        files={"image": ("p.png", image_bytes(photo.resize((size, size)), "PNG"), "image/png")},
    )


def test_a_large_image_reports_its_bands(make_client: MakeClient, photo: Image.Image) -> None:
    name = uuid.uuid4().hex
    with make_client(tile_pixels=64 * 64, tile_side=16) as client:
        assert_error(client.get(f"/stylize/progress/{name}"), 404, "not_found")
        response = _stylize(client, photo.convert("RGB"), 97, name)
        assert response.status_code == 200, response.text
        got = client.get(f"/stylize/progress/{name}").json()
        assert got["state"] == "done" and got["fraction"] == 1
        assert got["bands_total"] > 1 and got["bands_done"] == got["bands_total"]
        # A normal-lane image has a state, no bands.
        small = _stylize(client, photo.convert("RGB"), 40, name + "-small")
        assert small.status_code == 200
        got = client.get(f"/stylize/progress/{name}-small").json()
        assert (got["state"], got["bands_total"]) == ("done", None)
        assert client.get("/stylize/progress/bad!name").status_code == 422


def test_a_stopped_request_ends_between_bands(make_client: MakeClient, photo: Image.Image) -> None:
    name = uuid.uuid4().hex
    # Many small bands: the request is still running when the stop arrives.
    with make_client(tile_pixels=64 * 64, tile_side=16) as client:
        answer: dict[str, httpx.Response] = {}
        thread = threading.Thread(
            target=lambda: answer.update(r=_stylize(client, photo.convert("RGB"), 640, name))
        )
        thread.start()
        deadline = time.monotonic() + 120  # a hang guard
        while True:
            got = client.get(f"/stylize/progress/{name}")
            if got.status_code == 200 and got.json()["bands_done"] > 0:
                break
            assert thread.is_alive() and time.monotonic() < deadline, got.text
            time.sleep(0.05)
        stopped = client.delete(f"/stylize/progress/{name}")
        assert stopped.status_code == 200
        thread.join(timeout=120)
        assert_error(answer["r"], 409, "canceled")
        got = client.get(f"/stylize/progress/{name}").json()
        assert got["state"] == "canceled"
        assert got["bands_done"] < got["bands_total"]
        # The lane is free again for the next image.
        assert _stylize(client, photo.convert("RGB"), 97, name + "-next").status_code == 200
