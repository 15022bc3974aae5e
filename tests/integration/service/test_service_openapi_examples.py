"""Swagger UI's "Try it out" on POST /stylize works with the values it fills in (issue 26).

Swagger UI 5 fills every multipart form field with a sample of its schema: the first
of ``examples``, else ``example``, else a non-null ``default``, else (of the first
``anyOf`` alternative) the first ``enum`` value or the ``minimum`` of a number; a null
sample is sent as the string "null", a string with a pattern gets a random match. The
form once came pre-filled with ``max_side=16`` and ``quality=1`` (the minimums) and a
random style id: 422 ``image_too_small`` or 404 on any wide photo. Each documented value
must make a valid request, in the multipart form and in the query string of the
raw-body variant, against a style registered under the documented id.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import image_bytes

from model_store import StyleNotFound, open_store


def _documented(prop: dict[str, Any]) -> tuple[bool, Any]:
    """Return (whether the schema documents a value, the value): examples, example, default."""
    if prop.get("examples"):
        return True, prop["examples"][0]
    for key in ("example", "default"):
        if key in prop:
            return True, prop[key]
    return False, None


def _swagger_sample(prop: dict[str, Any]) -> Any:
    """What Swagger UI 5 puts in a form field for ``prop`` (None: nothing it can send)."""
    found, value = _documented(prop)
    if found and value is not None:
        return value
    branch = prop.get("anyOf", [prop])[0]  # the first alternative
    if branch.get("type") == "null":
        return "null"  # what it sends for a null sample (a 422)
    if branch.get("enum"):
        return branch["enum"][0]
    if branch.get("type") in ("integer", "number"):
        return branch.get("minimum", 0)
    if branch.get("type") == "string":
        return None  # a random match of the pattern: the test asks for an example instead
    return None


def _field(value: Any) -> str:
    """A JSON value as a form field or query string value."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture(scope="module")
def operation(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()["paths"]["/stylize"]["post"]


@pytest.fixture(scope="module")
def wide_png(photo: Image.Image) -> bytes:
    """A small photo wider than tall: a too-small ``max_side`` leaves it under 16 px high."""
    return image_bytes(photo.resize((120, 80)), "PNG")


def _register(store_url: str, style_id: str, generator: bytes, style_png: bytes) -> None:
    """Publish a style under the documented id (a bundled demo style in a real deployment)."""
    store = open_store(store_url)
    try:
        store.get(style_id)
    except StyleNotFound:
        store.create(style_png, name="documented example", style_id=style_id)
        store.publish(style_id, generator, metadata={"test": True})


def test_every_form_field_swagger_fills_in_makes_a_valid_request(
    client: TestClient,
    operation: dict[str, Any],
    store_url: str,
    tiny_generator_bytes: bytes,
    style_png: bytes,
    wide_png: bytes,
):
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    style = form["properties"]["style"]
    found, style_id = _documented(style)
    assert found and style_id, f"the style field documents no example: {style}"
    _register(store_url, style_id, tiny_generator_bytes, style_png)
    fields = {}
    for name, prop in form["properties"].items():
        if name != "image" and (value := _swagger_sample(prop)) is not None:
            fields[name] = _field(value)
    assert set(fields) == set(form["properties"]) - {"image"}, fields
    r = client.post("/stylize", files={"image": ("photo.png", wide_png, "image/png")}, data=fields)
    assert r.status_code == 200, (fields, r.text)
    # Each documented value alone (with the style) is valid as well.
    for name, prop in form["properties"].items():
        found, value = _documented(prop)
        if name in ("image", "style") or not found or value is None:
            continue
        data = {"style": style_id, name: _field(value)}
        files = {"image": ("photo.png", wide_png, "image/png")}
        r = client.post("/stylize", files=files, data=data)
        assert r.status_code == 200, (data, r.text)


def test_the_documented_query_string_of_a_raw_body_is_a_valid_request(
    client: TestClient,
    operation: dict[str, Any],
    store_url: str,
    tiny_generator_bytes: bytes,
    style_png: bytes,
    wide_png: bytes,
):
    params = {}
    for parameter in operation["parameters"]:
        assert parameter["in"] == "query"
        # Why the options are documented twice: these are for a raw image body.
        assert "for a raw image body" in parameter.get("description", ""), parameter
        found, value = _documented(parameter["schema"])
        if found and value is not None:
            params[parameter["name"]] = _field(value)
    assert {"style", "max_side", "quality"} <= set(params), params
    _register(store_url, params["style"], tiny_generator_bytes, style_png)
    r = client.post(
        "/stylize", params=params, content=wide_png, headers={"content-type": "image/png"}
    )
    assert r.status_code == 200, (params, r.text)
