"""What the browser tests (``tests/e2e/test_web_*.py``) share: headless Debian Chromium
driven by Playwright, pages that block every request leaving the service, the page's
common look-ups, and the axe-core audit. The fixtures that start the stack and Chromium
once for the session are in ``tests/e2e/conftest.py``; screenshots go to
``test-artifacts/web-ui/``."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "web-ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The shared stack's tiled-inference threshold (STYLIZE_TILE_PIXELS; 2048² by default).
TILE_PIXELS = 1024 * 1024
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AXE_VERSION = "4.10.3"


def skip_without_browser() -> None:
    """Skip the calling test module where Chromium or Playwright is missing; under CI fail.

    Call it at the module's top level, after its imports.
    """
    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip(
            f"no {CHROMIUM} (apt-get install chromium; under CI this fails)",
            allow_module_level=True,
        )
    if os.environ.get("CI"):
        from playwright import sync_api  # noqa: F401  (under CI a missing Playwright fails too)
    else:
        pytest.importorskip("playwright.sync_api")


def axe_folder() -> Path:
    """Where axe-core is installed from the npm registry (once, into the cache)."""
    cache = Path(os.environ.get("STYLIZE_CACHE_DIR") or Path.home() / ".cache/stylize")
    return cache / "npm" / f"axe-core-{AXE_VERSION}"


def axe_script() -> Path:
    """axe-core's ``axe.min.js`` under :func:`axe_folder` (there once installed)."""
    return axe_folder() / "node_modules/axe-core/axe.min.js"


def block_foreign_requests(context, origin: str) -> None:
    """Abort every request that would leave the service, as an offline machine would."""

    def route(route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("blob", "data") or parts.netloc == origin:
            route.continue_()
        else:
            route.abort("internetdisconnected")

    context.route("**/*", route)


def offline_page(browser, url: str, viewport: dict) -> tuple[object, object]:
    """A new context (mobile at the phone's size) and page that block requests leaving ``url``."""
    context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE)
    block_foreign_requests(context, urlsplit(url).netloc)
    return context, context.new_page()


def style_card(page, name: str):
    """The card of the style named ``name`` in the list of styles."""
    return page.locator("#style-list li.card", has=page.locator(".name", has_text=name))


def assert_in_view(page, selector: str) -> None:
    """The element's top part is on screen without scrolling by the user."""
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"]
    assert box is not None and 0 <= box["y"] < height - min(box["height"], 200), (box, height)


def shown_at(page, *fractions: float) -> list[str]:
    """Which image (``original`` or ``result``) one sees at these fractions of the frame's width."""
    return page.evaluate(
        """(fractions) => {
            const box = document.querySelector('#frame').getBoundingClientRect();
            return fractions.map((f) => document.elementFromPoint(
                box.left + f * box.width, box.top + box.height / 2).id);
        }""",
        list(fractions),
    )


def axe_violations(page, axe_js: Path) -> list[str]:
    """Serious and critical axe-core violations of the page as it is now, one line each."""
    # Run as a function of the test's, not a <script> tag: the page's CSP allows no inline
    # script (add_script_tag inserts one), and the test's own code is not the page's.
    page.evaluate("() => {\n" + axe_js.read_text() + "\n}")
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}×, e.g. {v['nodes'][0]['html']})"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]
