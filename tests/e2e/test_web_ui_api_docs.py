"""The page and the API docs side by side (the session's stack and Chromium,
tests/e2e/conftest.py): the page does not shadow the API, Swagger UI renders with no request
leaving the service, and its "Try it out" on /stylize works with what it fills in.
Screenshots: test-artifacts/web-ui/."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from browser_testing import ARTIFACTS, skip_without_browser

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


def test_the_page_does_not_shadow_the_api(stack) -> None:
    url, _ = stack
    assert httpx.get(f"{url}/", timeout=10).headers["content-type"].startswith("text/html")
    assert httpx.get(f"{url}/static/app.js", timeout=10).status_code == 200
    assert httpx.get(f"{url}/styles", timeout=10).json()["items"]
    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert "/" not in schema["paths"]


def test_the_api_docs_render_with_no_request_leaving_the_service(page, stack) -> None:
    url, _ = stack
    page.goto(url + "/docs")  # the page fixture blocks (and fails on) any foreign request
    page.locator(".swagger-ui .opblock-summary-path", has_text="/stylize").first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('.swagger-ui .opblock').length > 8")
    assert page.is_visible(".swagger-ui .info .title")
    # Under its own policy (its inline start-up script allowed by hash), nothing blocked:
    # the page fixture fails on any CSP report.
    assert "frame-ancestors 'none'" in page.evaluate(
        "async () => (await fetch('/docs')).headers.get('content-security-policy')"
    )
    page.screenshot(path=ARTIFACTS / "docs-swagger-ui.png")
    # ReDoc's bundle fetches its logo from its vendor whatever it is told: not served.
    assert httpx.get(f"{url}/redoc", timeout=10).status_code == 404


def test_swagger_try_it_out_on_stylize_works_with_what_it_fills_in(page, stack) -> None:
    """Swagger UI filled the form with max_side=16, quality=1 (the minimums) and a random
    style id: 422 image_too_small (or 404) on "Execute" without a change."""
    url, root = stack
    page.goto(url + "/docs")
    path = page.locator(".opblock-summary-path", has_text=re.compile(r"^/stylize$"))
    operation = page.locator(".opblock-post", has=path)
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    form = operation.locator(".opblock-section-request-body")
    assert form.locator("tr[data-property-name=style] input").input_value() == "scream"
    # A photo wider than tall (at max_side 16 it was under 16 px high).
    form.locator("input[type=file]").set_input_files(str(root / "data/content/chelsea.png"))
    with page.expect_response(lambda r: urlsplit(r.url).path == "/stylize") as answer:
        operation.locator("button.execute").click()
    assert answer.value.status == 200, answer.value.text()
    assert answer.value.headers["content-type"] == "image/png"
    page.screenshot(path=ARTIFACTS / "docs-try-it-out.png", full_page=True)
