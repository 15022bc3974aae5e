"""The API's contract at its edges: bad params, the OpenAPI document, small truths.

Issue 14 items 8, 9 and 11; issue 15 items 4 and 11. Every bad input is a JSON 4xx
naming what is wrong, never a 500; the OpenAPI document says what the service does.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from service_testing import PENDING_STYLE, assert_error

from model_store import InvalidTransition, open_store

NESTED = "[" * 100_000
BIG_SEED = "9" * 5000


def _create(client: TestClient, style_png: bytes, params: str):
    files = {"image": ("style.png", style_png, "image/png")}
    return client.post("/styles", files=files, data={"name": "probe", "params": params})


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ('{"style_weight": Infinity}', "style_weight"),  # was 500
        (NESTED, "params"),  # was 500
        ('{"seed": ' + BIG_SEED + "}", "params"),  # was 500
        ('{"iterations": 1.5}', "iterations"),  # was accepted, failed in the worker
        ('{"seed": "abc"}', "seed"),  # was accepted, failed in the worker
        ('{"iterations": "many"}', "iterations"),  # was a comparison error message
        ('{"lossnet": "../../../../../etc/passwd"}', "lossnet"),  # was accepted
        ('{"preset": "fast"}', "preset"),
    ],
)
def test_create_refuses_bad_params_naming_the_field(
    client: TestClient, style_png: bytes, params: str, field: str
):
    error = assert_error(_create(client, style_png, params), 422, "invalid_params")
    assert error["field"] == field


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ('{"params": {"style_weight": Infinity}}', 422, "invalid_params", "style_weight"),
        ('{"params": ' + NESTED + "}", 400, "invalid_json", None),
        ('{"params": {"seed": ' + BIG_SEED + "}}", 400, "invalid_json", None),
        ('{"params": {"seed": ' + "9" * 1000 + "}}", 422, "invalid_params", "seed"),
        ('{"params": {"iterations": 1.5}}', 422, "invalid_params", "iterations"),
        ('{"params": {"seed": "abc"}}', 422, "invalid_params", "seed"),
        ('{"params": {"lossnet": "/etc/passwd"}}', 422, "invalid_params", "lossnet"),
        ("not json", 400, "invalid_json", None),
        ("[1]", 422, "invalid_request", "body"),
    ],
)
def test_train_refuses_bad_bodies(
    client: TestClient, body: str, status: int, code: str, field: str | None
):
    # "alpha" is ready: a body that passed would start a run, so none may pass.
    r = client.post(
        "/styles/alpha/train", content=body, headers={"Content-Type": "application/json"}
    )
    error = assert_error(r, status, code)
    assert error.get("field") == field
    assert client.get("/styles/alpha").json()["status"] == "ready"


def test_conflict_message_names_the_status_not_an_enum(client: TestClient, store_url: str):
    r = client.post(f"/styles/{PENDING_STYLE}/train")
    error = assert_error(r, 409, "not_restartable")
    assert error["status"] == "queued"
    # The 409 of a lost race comes from the store's InvalidTransition (was: "cannot go
    # from <Status.QUEUED: 'queued'> to <Status.QUEUED: 'queued'>").
    with pytest.raises(InvalidTransition) as info:
        open_store(store_url).restart(PENDING_STYLE, {})
    assert str(info.value) == f"style {PENDING_STYLE!r}: cannot go from 'queued' to 'queued'"
    assert info.value.current == "queued" and type(info.value.current) is str


def test_create_refuses_two_image_files(client: TestClient, style_png: bytes):
    files = [
        ("image", ("a.png", style_png, "image/png")),
        ("image", ("b.png", style_png, "image/png")),
    ]
    r = client.post("/styles", files=files, data={"name": "two"})
    assert assert_error(r, 400, "too_many_files")["field"] == "image"


def test_options_lists_every_method_of_the_path(client: TestClient):
    r = client.options("/styles")
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
    assert r.json()["error"]["code"] == "method_not_allowed"


def _operations(doc: dict):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_openapi_document_is_true(client: TestClient):
    doc = client.get("/openapi.json").json()
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text and '"detail"' not in text
    error_ref = "#/components/schemas/ErrorOut"
    for path, method, op in _operations(doc):
        assert {"4XX", "5XX"} <= set(op["responses"]), (path, method)
        for status, response in op["responses"].items():
            if status[0] in "45":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": error_ref}, (path, method, status)
    schemas = doc["components"]["schemas"]
    assert schemas["TrainParams"]["properties"]["iterations"]["type"] == "integer"
    train = doc["paths"]["/styles/{style_id}/train"]["post"]
    assert train["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TrainIn"
    )
    assert "400" in train["responses"]  # the non-JSON body
    create = doc["paths"]["/styles"]["post"]
    form_ref = create["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    form = schemas[form_ref.rsplit("/", 1)[1]]
    assert form["properties"]["params"]["$ref"].endswith("/TrainParams")
    assert "Location" in create["responses"]["202"]["headers"]
    assert "Location" in train["responses"]["202"]["headers"]
    stylize = doc["paths"]["/stylize"]["post"]["responses"]
    assert {"X-Style-Id", "X-Style-Version", "Server-Timing"} <= set(stylize["200"]["headers"])
    assert "Retry-After" in stylize["429"]["headers"]
    events = doc["paths"]["/styles/{style_id}/events"]["get"]["responses"]["200"]
    stream = events["content"]["text/event-stream"]
    assert set(stream["x-events"]) == {"style", "end", "deleted", "timeout", "error"}
    assert "`end`" in events["description"]
    preview = doc["paths"]["/styles/{style_id}/preview"]["get"]["responses"]["200"]
    assert "image/jpeg" in preview["content"]
