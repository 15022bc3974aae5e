"""Styles stored over another style's weights, through the real app (issue 27 item 3):
``GET /styles/{id}`` says what a style is stored over and how many bytes it takes, it
serves the rebuilt generator, and deleting the style it depends on is a 409 until the
dependent is gone."""

from __future__ import annotations

import hashlib

import pytest
from blend_testing import CHILD, family, store_url  # noqa: F401 (fixtures)
from PIL import Image
from service_testing import assert_error, image_bytes


@pytest.fixture(scope="module")
def client(make_client):
    with make_client() as c:
        yield c


def test_a_style_says_what_it_is_stored_over(client, family):  # noqa: F811
    _, weights = family
    doc = client.get(f"/styles/{CHILD}").json()
    storage = doc["storage"]
    assert storage["depends_on"] == {
        "style_id": "a",
        "version": 1,
        "sha256": hashlib.sha256(weights["a"]).hexdigest(),
    }
    assert storage["full_bytes"] == len(weights[CHILD]) == doc["versions"][0]["size"]
    # Only the γ/β and the file's header: a small share of the generator.
    assert storage["bytes"] == doc["versions"][0]["stored_bytes"] < storage["full_bytes"] / 10
    parent = client.get("/styles/a").json()["storage"]
    assert parent == {
        "bytes": len(weights["a"]),
        "full_bytes": len(weights["a"]),
        "depends_on": None,
    }


def test_a_style_stored_over_another_serves(client, photo: Image.Image):
    small = image_bytes(photo.resize((64, 48)), "PNG")
    r = client.post(
        "/stylize", params={"style": CHILD}, content=small, headers={"content-type": "image/png"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-style-id"] == CHILD


def test_deleting_a_style_others_depend_on_is_refused_until_they_are_gone(client, family):  # noqa: F811
    before = client.get("/styles/a").json()
    error = assert_error(client.delete("/styles/a"), 409, "has_dependents")
    assert (error["style_id"], error["dependents"]) == ("a", [CHILD])
    assert "delete them first, or retrain them" in error["message"]
    after = client.get("/styles/a").json()
    assert (after["status"], after["revision"]) == (before["status"], before["revision"])
    assert client.delete(f"/styles/{CHILD}").status_code == 204
    assert client.delete("/styles/a").status_code == 204
    assert client.get("/styles/a").status_code == 404
