"""Another site's page must not drive the service (issue 24, item 2): cross-site state
changes refused, CORS for configured origins only, security headers on the page.

The requests carry what a browser sends (``Origin``, ``Sec-Fetch-Site``, ``Sec-Fetch-Mode``)
for each way a page can send them: a ``no-cors`` fetch, a ``<form>``, a preflighted fetch.
The app runs with its own training queue and no worker, so a created style stays queued.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from redis import Redis
from service_testing import assert_error

from service import ServiceSettings
from service.security_headers import PAGE_POLICY
from service.settings import normalize_origin

MakeClient = Callable[..., AbstractContextManager[TestClient]]
ALLOWED = "https://app.example.com"
FOREIGN = "https://evil.example"
OWN = "http://testserver"  # TestClient's Host
#: A page on another site: fetch(url, {method: "POST", mode: "no-cors"}).
NO_CORS = {"Origin": FOREIGN, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
#: The params of the finding: an hour-long training started by a foreign page.
HEAVY = '{"iterations": 200000, "image_size": 1024, "batch_size": 64, "width": 4}'


@pytest.fixture(scope="module")
def queue() -> str:
    return f"cross-site-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def client(make_client: MakeClient, queue: str) -> Iterator[TestClient]:
    with make_client(allowed_origins=[ALLOWED], training_queue=queue) as c:
        yield c


def _create(client: TestClient, style_png: bytes, headers: dict[str, str] | None = None) -> Any:
    files = {"image": ("s.png", style_png, "image/png")}
    return client.post("/styles", files=files, data={"name": "x-site"}, headers=headers)


def _style_ids(client: TestClient) -> set[str]:
    return {s["id"] for s in client.get("/styles?limit=200").json()["items"]}


def _queued(redis_url: str, queue: str) -> int:
    return Redis.from_url(redis_url).llen(f"rq:queue:{queue}")


@pytest.fixture
def queued_style(client: TestClient, style_png: bytes) -> Iterator[str]:
    created = _create(client, style_png)  # no Origin: curl, the CLI
    assert created.status_code == 202, created.text
    style_id = created.json()["id"]
    yield style_id
    client.delete(f"/styles/{style_id}")


def test_a_no_cors_cancel_from_another_site_is_refused_and_changes_nothing(
    client: TestClient, queued_style: str
):
    # Was: fetch(".../cancel", {method: "POST", mode: "no-cors"}) canceled the style.
    refused = client.post(f"/styles/{queued_style}/cancel", headers=NO_CORS)
    error = assert_error(refused, 403, "cross_site")
    assert "STYLIZE_ALLOWED_ORIGINS" in error["message"] and error["origin"] == FOREIGN
    assert "access-control-allow-origin" not in refused.headers
    assert client.get(f"/styles/{queued_style}").json()["status"] == "queued"


def test_a_multipart_create_from_another_site_is_refused_and_starts_nothing(
    client: TestClient, style_png: bytes, redis_url: str, queue: str
):
    # Was: a foreign page's multipart POST /styles started this training (202).
    before, jobs = _style_ids(client), _queued(redis_url, queue)
    files = {"image": ("s.png", style_png, "image/png")}
    refused = client.post(
        "/styles", files=files, data={"name": "evil", "params": HEAVY}, headers=NO_CORS
    )
    assert_error(refused, 403, "cross_site")
    assert refused.headers["connection"] == "close"  # the body is never read
    assert _style_ids(client) == before
    assert _queued(redis_url, queue) == jobs


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, id="opaque-origin"),
        pytest.param(
            {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, id="no-origin"
        ),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site-no-origin"),
        pytest.param({"Origin": "http://testserver.evil.example"}, id="look-alike"),
        pytest.param({"Origin": "http://testserver:8080"}, id="other-port"),
        # A configured origin, but a request a <form> could send: never a state change.
        pytest.param({"Origin": ALLOWED, "Sec-Fetch-Site": "cross-site"}, id="allowed-simple"),
    ],
)
def test_other_cross_site_state_changes_are_refused(
    client: TestClient, queued_style: str, headers: dict[str, str]
):
    calls = [("POST", f"/styles/{queued_style}/cancel")]
    if headers.get("Origin") != ALLOWED:  # a DELETE from it was preflighted: allowed
        calls.append(("DELETE", f"/styles/{queued_style}"))
    for method, path in calls:
        assert_error(client.request(method, path, headers=headers), 403, "cross_site")
    assert client.get(f"/styles/{queued_style}").json()["status"] == "queued"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="curl"),
        pytest.param({"Origin": OWN, "Sec-Fetch-Site": "same-origin"}, id="same-origin"),
        pytest.param({"Origin": OWN}, id="own-origin"),
        pytest.param({"Sec-Fetch-Site": "same-origin"}, id="same-origin-no-origin"),
        # A proxy that rewrites Host: the browser's own verdict still counts.
        pytest.param(
            {"Origin": "https://public.example", "Sec-Fetch-Site": "same-origin"}, id="proxied"
        ),
    ],
)
def test_same_origin_and_plain_clients_may_change_state(
    client: TestClient, style_png: bytes, headers: dict[str, str]
):
    created = _create(client, style_png, headers)
    assert created.status_code == 202, created.text
    style_id = created.json()["id"]
    assert client.post(f"/styles/{style_id}/cancel", headers=headers).status_code == 200
    assert client.delete(f"/styles/{style_id}", headers=headers).status_code == 204


def test_a_configured_origin_changes_state_with_cors_headers(client: TestClient, style_png: bytes):
    headers = {"Origin": ALLOWED, "Sec-Fetch-Site": "cross-site", "X-Requested-With": "fetch"}
    created = _create(client, style_png, headers)
    assert created.status_code == 202, created.text
    assert created.headers["access-control-allow-origin"] == ALLOWED
    assert "Location" in created.headers["access-control-expose-headers"]
    assert "Origin" in created.headers["vary"]
    assert "access-control-allow-credentials" not in created.headers
    style_id = created.json()["id"]
    # DELETE is always preflighted by a browser: no marker header needed.
    deleted = client.delete(f"/styles/{style_id}", headers={"Origin": ALLOWED})
    assert deleted.status_code == 204
    assert deleted.headers["access-control-allow-origin"] == ALLOWED


def test_preflight_for_a_configured_origin(client: TestClient):
    asked = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    answer = client.options("/styles", headers=asked)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "Origin" in answer.headers["vary"]
    refused = client.options("/styles", headers={**asked, "Origin": FOREIGN})
    assert_error(refused, 403, "cross_site")
    assert "access-control-allow-origin" not in refused.headers


def test_reads_get_cors_headers_for_configured_origins_only(client: TestClient):
    mine = client.get("/styles", headers={"Origin": ALLOWED})
    assert mine.status_code == 200 and mine.headers["access-control-allow-origin"] == ALLOWED
    theirs = client.get("/styles", headers={"Origin": FOREIGN})
    assert theirs.status_code == 200 and "access-control-allow-origin" not in theirs.headers
    assert "Origin" in theirs.headers["vary"]  # a cache must not serve one to the other


def test_without_configured_origins_no_answer_varies(make_client: MakeClient, queue: str):
    with make_client(training_queue=queue) as plain:
        answer = plain.get("/styles", headers={"Origin": FOREIGN})
        assert "access-control-allow-origin" not in answer.headers
        assert "origin" not in answer.headers.get("vary", "").lower()
        refused = plain.post("/styles/alpha/cancel", headers=NO_CORS)
        assert_error(refused, 403, "cross_site")


def test_allowed_origins_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(
        "STYLIZE_ALLOWED_ORIGINS", "https://A.example.com:443/, http://b.example:8080"
    )
    settings = ServiceSettings()
    assert settings.allowed_origins == ["https://a.example.com", "http://b.example:8080"]
    assert normalize_origin("http://[::1]:80") == "http://[::1]"
    for bad in ("*", "null", "https://a.example/path", "ftp://a.example", "a.example"):
        with pytest.raises(ValidationError, match="not an origin"):
            ServiceSettings(allowed_origins=[bad])


# Security headers -------------------------------------------------------------------


def _directives(policy: str) -> dict[str, str]:
    return {d.split()[0]: d.partition(" ")[2] for d in (p.strip() for p in policy.split(";")) if d}


@pytest.mark.parametrize(
    "path", ["/", "/static/app.js", "/static/style.css", "/docs-assets/swagger-ui.css"]
)
def test_page_and_static_files_carry_the_page_policy(client: TestClient, path: str):
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "same-origin"
    policy = _directives(answer.headers["content-security-policy"])
    assert policy["script-src"] == "'self'"  # no inline script, no eval
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"


def test_api_answers_are_nosniff_and_run_nothing(client: TestClient):
    for answer in (client.get("/styles"), client.get("/styles/nope"), client.get("/healthz")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert _directives(answer.headers["content-security-policy"])["default-src"] == "'none'"


def test_docs_allow_only_their_own_inline_script(client: TestClient):
    answer = client.get("/docs")
    assert answer.status_code == 200
    policy = _directives(answer.headers["content-security-policy"])
    inline = re.findall(r"<script>(.*?)</script>", answer.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert policy["frame-ancestors"] == "'none'"


def test_the_page_has_no_inline_script_or_style(client: TestClient):
    html = client.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    assert "frame-ancestors 'none'" in PAGE_POLICY
