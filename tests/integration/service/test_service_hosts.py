"""DNS rebinding (#24): requests are answered only for this service's host names.

A page on ``http://rebind.example:8000`` whose name then resolves to 127.0.0.1 is the
service's own origin to the browser: its ``Origin`` equals the ``Host`` it sends, so the
cross-site check lets its state changes through. The ``Host`` is what gives it away.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from service_testing import TEST_HOSTS, assert_error

from service import ServiceSettings

MakeClient = Callable[..., AbstractContextManager[TestClient]]
EVIL = "rebind.example:8000"


def test_a_rebound_page_can_neither_read_nor_change_anything(client: TestClient):
    # Its scripts' requests: same-origin to the browser, so Origin equals Host.
    read = client.get("/styles", headers={"Host": EVIL})
    assert_error(read, 400, "host_not_allowed")
    assert read.json()["error"]["host"] == "rebind.example"
    assert read.headers["x-request-id"]
    assert read.headers["content-type"] == "application/json"
    change = client.post(
        "/styles/alpha/cancel",
        headers={"Host": EVIL, "Origin": f"http://{EVIL}", "Sec-Fetch-Site": "same-origin"},
    )
    assert_error(change, 400, "host_not_allowed")
    assert client.get("/styles/alpha").json()["status"] == "ready"  # nothing changed


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8000",  # make run
        "localhost:8000",
        "app.localhost",  # browsers resolve *.localhost to loopback themselves
        "[::1]:8000",
        "10.244.3.17:8000",  # a pod IP: what Kubernetes' httpGet probes send
        "192.168.1.20",  # a LAN address, as compose is often reached
    ],
)
def test_addresses_and_localhost_are_always_answered(client: TestClient, host: str):
    for path in ("/healthz", "/readyz", "/styles"):
        assert client.get(path, headers={"Host": host}).status_code == 200, (path, host)


def test_configured_names_are_answered_and_look_alikes_are_not(make_client: MakeClient):
    hosts = [*TEST_HOSTS, "stylize.example.com", "*.corp.example"]
    with make_client(allowed_hosts=hosts) as client:
        for host in ("stylize.example.com", "STYLIZE.example.com.:443", "gpu1.corp.example"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("stylize.example.com.evil", "corp.example", "xcorp.example", EVIL):
            assert_error(client.get("/healthz", headers={"Host": host}), 400, "host_not_allowed")


def test_a_star_turns_the_check_off(make_client: MakeClient):
    with make_client(allowed_hosts=["*"]) as client:
        assert client.get("/styles", headers={"Host": EVIL}).status_code == 200


def test_settings_take_names_and_refuse_urls():
    settings = ServiceSettings(allowed_hosts=" Stylize.Example.com, *.corp.example ")
    assert settings.allowed_hosts == ["stylize.example.com", "*.corp.example"]
    for bad in ("https://stylize.example.com", "stylize.example.com:8000", "a.*.example", "*."):
        with pytest.raises(ValidationError, match="not a host name"):
            ServiceSettings(allowed_hosts=[bad])
