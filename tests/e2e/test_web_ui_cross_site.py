"""A page on another site cannot drive the service (issue 24) in a real browser (the
session's stack and Chromium, tests/e2e/conftest.py): no-cors and CORS fetches and a plain
HTML form posted across sites start nothing and cancel nothing."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from browser_testing import REPO, skip_without_browser

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


#: The finding's training: an hour-long run started by a page the user merely visited.
HEAVY = {"iterations": 200000, "image_size": 1024, "batch_size": 64, "width": 4}
FOREIGN_CALLS = """async ([api, id, png, params]) => {
    const form = () => {
        const body = new FormData();
        const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
        body.append("image", new Blob([bytes], {type: "image/jpeg"}), "style.jpg");
        body.append("name", "from elsewhere");
        body.append("params", params);
        return body;
    };
    // What any page can send without asking: no-cors fetches (opaque answers).
    await fetch(`${api}/styles/${id}/cancel`, {method: "POST", mode: "no-cors"});
    await fetch(`${api}/styles`, {method: "POST", mode: "no-cors", body: form()});
    // A CORS fetch is sent too (a simple request), only its answer is hidden.
    return await fetch(`${api}/styles`, {method: "POST", body: form()}).then(
        () => "read", () => "hidden");
}"""


@contextmanager
def _another_site() -> Iterator[str]:
    """Serve a blank page from another origin (``localhost``, the API being ``127.0.0.1``).

    A real local server rather than a routed fake host: Chromium keeps pages of public
    origins from calling local addresses at all (Private Network Access), which would hide
    what the service does; a page of the local machine, e.g. a dev server, is not kept.
    """

    class Blank(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>elsewhere</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_site_cannot_drive_the_service(browser, stack) -> None:
    """Issue 24: a page elsewhere canceled a style and started a training (no keys)."""
    url, _ = stack
    painting = (REPO / "demo_styles/scream/style.jpg").read_bytes()
    long_run = {"iterations": 100000, "image_size": 64, "style_size": 64, "width": 0.25}
    created = httpx.post(
        f"{url}/styles",
        files={"image": ("style.jpg", painting, "image/jpeg")},
        data={"name": "Target", "params": json.dumps(long_run)},
        timeout=30,
    )
    assert created.status_code == 202, created.text
    style_id = created.json()["id"]
    context = browser.new_context()
    try:
        with _another_site() as elsewhere:
            page = context.new_page()
            page.goto(elsewhere)
            png = base64.b64encode(painting).decode()
            cors = page.evaluate(FOREIGN_CALLS, [url, style_id, png, json.dumps(HEAVY)])
            assert cors == "hidden"  # no Access-Control-Allow-Origin for an unknown origin
            # A plain HTML form posted across sites (a navigation: no fetch at all).
            action = f"{url}/styles/{style_id}/cancel"
            page.set_content(f'<form method="post" action="{action}"><button>x</button></form>')
            with page.expect_navigation():
                page.click("button")
            assert '"cross_site"' in page.content()
        styles = httpx.get(f"{url}/styles?limit=200", timeout=10).json()["items"]
        assert "from elsewhere" not in [s["name"] for s in styles]
        status = httpx.get(f"{url}/styles/{style_id}", timeout=10).json()["status"]
        assert status in ("queued", "training")
    finally:
        context.close()
        # The worker must not stay busy with it: the tests after this one train.
        httpx.post(f"{url}/styles/{style_id}/cancel", timeout=10)
        httpx.delete(f"{url}/styles/{style_id}", timeout=10)
