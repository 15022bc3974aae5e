"""The web page at ``/`` in a real browser: headless Chromium (Debian's package) driven by
Playwright against ``stylize up`` (Redis + worker + API). Screenshots of each screen go to
``test-artifacts/web-ui/`` (CI keeps them). The accessibility audit runs axe-core (from the
npm registry, installed once into the cache) inside the page."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from stack_testing import running_stack

REPO = Path(__file__).resolve().parents[2]
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

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(
        f"no {CHROMIUM} (apt-get install chromium; under CI this fails)", allow_module_level=True
    )
if os.environ.get("CI"):
    from playwright import sync_api  # under CI a missing Playwright fails too
else:
    sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(300)
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


AXE_VERSION = "4.10.3"


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """axe-core's ``axe.min.js`` from the npm registry, installed once into the cache."""
    cache = Path(os.environ.get("STYLIZE_CACHE_DIR") or Path.home() / ".cache/stylize")
    folder = cache / "npm" / f"axe-core-{AXE_VERSION}"
    script = folder / "node_modules/axe-core/axe.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("the accessibility audit needs npm (apt-get install npm)")
            pytest.skip("no npm to install axe-core with")
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(folder),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return script


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("web-stack")
    with running_stack(root) as (url, _process):
        yield url, root


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page on the service that fails the test if it fetches anything elsewhere."""
    url, _ = stack
    origin = urlsplit(url).netloc
    context, page = _offline_page(browser, url, LAPTOP)
    foreign: list[str] = []
    page_errors: list[str] = []
    page.on(
        "request",
        lambda r: (
            foreign.append(r.url)
            if urlsplit(r.url).scheme not in ("blob", "data") and urlsplit(r.url).netloc != origin
            else None
        ),
    )
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    # Whatever the Content-Security-Policy blocked (Chromium reports each on the console).
    blocked: list[str] = []
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.set_default_timeout(30_000)
    yield page
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-end.png", full_page=True)
    context.close()
    assert foreign == [], f"the page fetched outside {origin}: {foreign}"
    assert page_errors == [], page_errors
    assert blocked == [], blocked


def _assert_in_view(page, selector: str) -> None:
    """The element's top part is on screen without scrolling by the user."""
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"]
    assert box is not None and 0 <= box["y"] < height - min(box["height"], 200), (box, height)


def _shown_at(page, *fractions: float) -> list[str]:
    """Which image (``original`` or ``result``) one sees at these fractions of the frame's width."""
    return page.evaluate(
        """(fractions) => {
            const box = document.querySelector('#frame').getBoundingClientRect();
            return fractions.map((f) => document.elementFromPoint(
                box.left + f * box.width, box.top + box.height / 2).id);
        }""",
        list(fractions),
    )


def _block_foreign_requests(context, origin: str) -> None:
    """Abort every request that would leave the service, as an offline machine would."""

    def route(route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("blob", "data") or parts.netloc == origin:
            route.continue_()
        else:
            route.abort("internetdisconnected")

    context.route("**/*", route)


def _offline_page(browser, url: str, viewport: dict) -> tuple[object, object]:
    """A new context (mobile at the phone's size) and page that block requests leaving ``url``."""
    context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE)
    _block_foreign_requests(context, urlsplit(url).netloc)
    return context, context.new_page()


def _card(page, name: str):
    return page.locator("#style-list li.card", has=page.locator(".name", has_text=name))


def test_stylize_a_photo_shows_the_result_at_the_right_size(page, stack) -> None:
    url, root = stack
    photo = root / "data/content/chelsea.png"
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.screenshot(path=ARTIFACTS / "1-stylize-empty.png", full_page=True)
    page.set_input_files("#photo", str(photo))
    page.locator("#gallery label.tile", has=page.locator("input[value=scream]")).click()
    assert page.is_checked("#gallery input[value=scream]")
    page.locator("#max-side").fill("160")  # range inputs take fill(); fires input/change
    assert page.text_content("#max-side-out") == "160"
    page.click("#stylize-btn")
    page.wait_for_selector("#result:not([hidden])")
    size = page.evaluate("() => [result.naturalWidth, result.naturalHeight]")
    # What the API itself returns for the same request.
    with photo.open("rb") as handle:
        direct = httpx.post(
            f"{url}/stylize",
            files={"image": ("chelsea.png", handle, "image/png")},
            data={"style": "scream", "max_side": "160"},
            timeout=60,
        )
    assert direct.status_code == 200, direct.text
    expected = Image.open(io.BytesIO(direct.content)).size
    assert max(expected) == 160
    assert tuple(size) == expected
    assert page.is_visible("#download")
    assert page.get_attribute("#download", "download").endswith("-scream.png")
    _assert_in_view(page, "#result")
    page.screenshot(path=ARTIFACTS / "2-stylize-result.png")  # the viewport: what one sees

    # Before/after on the same frame: the original covers the result up to the slider.
    assert _shown_at(page, 0.25, 0.75) == ["result", "result"]
    page.locator("#split").fill("50")
    assert _shown_at(page, 0.25, 0.75) == ["original", "result"]
    page.screenshot(path=ARTIFACTS / "2b-stylize-before-after.png")
    # 1:1 shows the result's pixels unscaled.
    page.click("#zoom")
    assert page.get_attribute("#zoom", "aria-pressed") == "true"
    shown = page.evaluate("() => result.getBoundingClientRect().width")
    assert shown == pytest.approx(size[0], abs=1)
    page.click("#zoom")
    # Copy puts a PNG of the result on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy")
    page.wait_for_function("() => /Copied/.test(window['result-status'].textContent)")
    copied = page.evaluate(
        """async () => {
            const [item] = await navigator.clipboard.read();
            const blob = await item.getType('image/png');
            const bitmap = await createImageBitmap(blob);
            return [bitmap.width, bitmap.height];
        }"""
    )
    assert tuple(copied) == expected


def test_print_size_keeps_a_large_photo_large(page, stack, tmp_path: Path) -> None:
    """Over 2048² px the service stylizes by exact tiled inference (its large-image lane)."""
    url, root = stack
    big = tmp_path / "big.jpg"
    Image.open(root / "data/content/chelsea.png").convert("RGB").resize((2400, 1800)).save(big)
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.set_input_files("#photo", str(big))
    page.locator("#gallery label.tile", has=page.locator("input[value=scream]")).click()
    page.check("#print-size")
    assert page.is_disabled("#max-side")
    with page.expect_response(lambda r: r.url.endswith("/stylize"), timeout=300_000) as answer:
        page.click("#stylize-btn")
    assert answer.value.status == 200
    page.wait_for_selector("#result:not([hidden])")
    size = page.evaluate("() => [result.naturalWidth, result.naturalHeight]")
    assert tuple(size) == (2400, 1800)


def test_a_bad_upload_shows_the_api_error_text(page, stack, tmp_path: Path) -> None:
    url, _ = stack
    bogus = tmp_path / "notes.png"
    bogus.write_bytes(b"this is plain text, not a picture\n" * 20)
    with bogus.open("rb") as handle:
        direct = httpx.post(
            f"{url}/stylize",
            files={"image": ("notes.png", handle, "image/png")},
            data={"style": "scream", "max_side": "1024"},
            timeout=30,
        )
    assert 400 <= direct.status_code < 500
    message = direct.json()["error"]["message"]
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.set_input_files("#photo", str(bogus))
    page.click("#stylize-btn")
    error = page.locator("#stylize-error")
    error.wait_for(state="visible")
    assert message in error.text_content()
    assert page.is_hidden("#result")
    page.screenshot(path=ARTIFACTS / "3-stylize-error.png", full_page=True)


def test_a_tiny_training_started_from_the_form_runs_to_done(page, stack) -> None:
    url, _ = stack
    # The user steps away from the tab and has allowed notifications; what the page
    # hands the browser's Notification is recorded.
    page.context.grant_permissions(["notifications"], origin=url)
    page.add_init_script(
        """Object.defineProperty(Document.prototype, 'hidden', {get: () => !!window.away});
        window.notes = [];
        const Real = window.Notification;
        window.Notification = class extends Real {
            constructor(title, options) {
                window.notes.push(options.body);  // recorded whether headless shows it or not
                super(title, options);
            }
        };"""
    )
    page.goto(url + "/?tiny")  # fills the advanced parameters with a seconds-long training
    page.wait_for_selector("#style-list li.card")
    assert '"iterations":4' in page.input_value("#params")
    page.set_input_files("#painting", str(REPO / "demo_styles/starry-night/style.jpg"))
    page.fill("#style-name", "Tiny starry")
    page.check("#notify")
    page.evaluate("() => (window.away = true)")
    page.click("#train-btn")
    card = _card(page, "Tiny starry")
    card.wait_for()
    assert card.locator(".badge").text_content() in ("queued", "training", "ready")
    page.screenshot(path=ARTIFACTS / "4-training-started.png", full_page=True)
    seen: set[float] = set()

    def done() -> bool:
        value = card.locator(".bar").evaluate("b => b.hasAttribute('value') ? b.value : -1")
        seen.add(value)
        return card.locator(".badge").text_content().startswith(("ready", "failed", "canceled"))

    deadline = 240
    while not done():
        assert deadline > 0, "training did not finish"
        page.wait_for_timeout(250)
        deadline -= 0.25
    assert card.locator(".badge").text_content() == "ready · v1", card.text_content()
    assert min(seen) < 1  # queued (indeterminate) or part way, then full
    assert card.locator(".bar").evaluate("b => b.value") == 1
    assert "done" in card.locator(".ptext").text_content()
    assert "version 1" in card.locator(".detail").text_content()
    # Told while away: the tab's title and a notification.
    assert page.title().startswith("✓ “Tiny starry” is ready")
    assert page.evaluate("() => window.notes") == ["“Tiny starry” is ready"]
    page.evaluate(
        "() => { window.away = false; document.dispatchEvent(new Event('visibilitychange')); }"
    )
    assert page.title() == "stylize: photos into paintings"
    # The new style joins the gallery of usable styles.
    page.wait_for_selector("#gallery label.tile:has-text('Tiny starry')")
    page.screenshot(path=ARTIFACTS / "5-training-done.png", full_page=True)
    # The loss curve is stored with the style: it is there after a reload.
    page.reload()
    card.wait_for()
    points = card.locator(".curve polyline").get_attribute("points").split()
    assert len(points) >= 2 and card.locator(".curve").is_visible()
    # The picture enlarges.
    card.locator(".thumb-btn").click()
    viewer = page.locator("#viewer img")
    viewer.wait_for()
    assert viewer.bounding_box()["width"] >= 300
    assert "/image?r=" in viewer.get_attribute("src")  # the painting, not the preview
    page.screenshot(path=ARTIFACTS / "5b-painting-enlarged.png")
    page.click("#viewer-close")
    assert page.is_hidden("#viewer")

    # Train it again: version 1 stays in the gallery while the run goes on, then version 2.
    card.locator(".again").click()
    page.click("#retrain-go")  # the same parameters
    deadline = 240
    while "version 2" not in card.locator(".detail").text_content():
        assert deadline > 0, card.text_content()
        assert card.locator(".badge").text_content() in (
            "ready · v1",  # until the API takes the retrain (409 job_exists meanwhile)
            "ready · v1 (retrain queued)",
            "ready · v1 (retraining)",
            "ready · v2",
        )
        assert page.is_visible("#gallery label.tile:has-text('Tiny starry')")
        page.wait_for_timeout(250)
        deadline -= 0.25
    assert card.locator(".badge").text_content() == "ready · v2"
    assert page.is_hidden("#styles-error")


def test_cancel_from_the_page_keeps_the_style(page, stack) -> None:
    url, _ = stack
    page.on("dialog", lambda dialog: dialog.accept())  # the "Stop the training?" question
    page.goto(url)
    page.click("#advanced summary")
    long_run = {"iterations": 100000, "image_size": 64, "style_size": 64, "batch_size": 1}
    page.fill("#params", json.dumps({**long_run, "width": 0.25, "holdout": 1}))
    page.set_input_files("#painting", str(REPO / "demo_styles/scream/style.jpg"))
    page.fill("#style-name", "Endless scream")
    page.click("#train-btn")
    card = _card(page, "Endless scream")
    card.locator(".cancel").click()
    badge = card.locator(".badge")
    page.wait_for_function("b => b.textContent === 'canceled'", arg=badge.element_handle())
    assert card.locator(".cancel").is_hidden() and card.locator(".again").is_visible()
    assert page.is_hidden("#styles-error")
    page.reload()  # the server agrees
    page.wait_for_function("b => b.textContent === 'canceled'", arg=badge.element_handle())


def test_the_page_fits_a_phone_screen(browser, stack) -> None:
    url, _ = stack
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(url + "/")
        page.wait_for_selector("#gallery input[value=scream]", state="attached")
        page.wait_for_selector("#style-list li.card")
        overflow = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        page.screenshot(path=ARTIFACTS / "6-phone.png", full_page=True)
        assert overflow[0] <= overflow[1], overflow
        # Every form control has an accessible name.
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                && !e.textContent.trim())
            .map(e => e.outerHTML)"""
        )
        assert unnamed == []
    finally:
        context.close()


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


# ---------------------------------------------------------------- issue 15: the page


def test_a_photo_dropped_anywhere_on_the_card_or_pasted_is_shown_with_its_size(page, stack) -> None:
    url, root = stack
    data = (root / "data/content/chelsea.png").read_bytes()
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    make_file = """([bytes, name]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, {type: 'image/png'}));
        return transfer;
    }"""
    # Dropped on the heading, not on the file input: the whole card takes it.
    transfer = page.evaluate_handle(make_file, [list(data), "dropped-cat.png"])
    page.dispatch_event("#stylize-h", "drop", {"dataTransfer": transfer})
    page.wait_for_function("() => /×/.test(document.querySelector('#photo-meta').textContent)")
    meta = page.text_content("#photo-meta")
    size = Image.open(io.BytesIO(data)).size
    assert meta.startswith("dropped-cat.png · ") and meta.endswith(f"{size[0]}×{size[1]}")
    assert f"{-(-len(data) // 1024)} KB" in meta
    assert page.is_visible("#photo-thumb")
    # The file input says what was chosen too (not "No file chosen").
    assert page.evaluate("() => photo.files[0]?.name") == "dropped-cat.png"
    page.screenshot(path=ARTIFACTS / "7-photo-dropped.png")

    pasted = page.evaluate(
        """([bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], 'image.png', {type: 'image/png'}));
            document.body.dispatchEvent(new ClipboardEvent('paste', {
                clipboardData: transfer, bubbles: true, cancelable: true}));
            return document.querySelector('#photo-meta').textContent;
        }""",
        [list(data)],
    )
    assert pasted.startswith("image.png · ")
    page.click("#stylize-btn")
    page.wait_for_selector("#result:not([hidden])")


def test_a_check_on_the_page_is_not_called_a_network_error(page, stack) -> None:
    url, _ = stack
    page.goto(url + "/")
    page.wait_for_selector("#style-list li.card")
    page.fill("#style-name", "No painting")
    page.click("#train-btn")
    error = page.locator("#new-error")
    error.wait_for(state="visible")
    assert error.text_content() == "Pick a painting first."
    page.click("#stylize-btn")
    assert page.locator("#stylize-error").text_content() == "Pick a photo first."
    # The speed choice does not use the API's word "preset" (a loss recipe there).
    assert page.locator("label[for=speed]").text_content() == "Training speed"
    assert "preset" not in page.locator("#speed").inner_text().lower()


def test_style_tiles_show_the_painting_with_its_preview(page, stack) -> None:
    url, _ = stack
    page.goto(url + "/")
    tile = page.locator("#gallery label.tile", has=page.locator("input[value=starry-night]"))
    tile.wait_for()
    assert (
        tile.locator("img.painting").get_attribute("src").startswith("/styles/starry-night/image?")
    )
    assert (
        tile.locator("img.preview").get_attribute("src").startswith("/styles/starry-night/preview?")
    )
    small = tile.locator("img.preview").bounding_box()["width"]
    tile.hover()
    page.wait_for_timeout(300)  # the preview grows (a short transition)
    assert tile.locator("img.preview").bounding_box()["width"] > small * 1.4
    page.screenshot(path=ARTIFACTS / "8-tiles.png")


def test_on_a_phone_the_result_comes_into_view(browser, stack) -> None:
    url, root = stack
    context, page = _offline_page(browser, url, PHONE)
    try:
        page.goto(url + "/")
        page.wait_for_selector("#gallery input[value=scream]", state="attached")
        page.set_input_files("#photo", str(root / "data/content/astronaut.png"))
        page.locator("#max-side").fill("256")
        page.click("#stylize-btn")
        page.wait_for_selector("#result:not([hidden])")
        _assert_in_view(page, "#result")
        page.screenshot(path=ARTIFACTS / "9-phone-result.png")
    finally:
        context.close()


def _axe_violations(page, axe_js: Path) -> list[str]:
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


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_no_serious_accessibility_violations(browser, stack, axe_js: Path, viewport) -> None:
    """axe-core over the stylize view (with a result), the styles and a training in progress."""
    url, root = stack
    with (REPO / "demo_styles/scream/style.jpg").open("rb") as handle:
        params = {"iterations": 100000, "image_size": 64, "style_size": 64, "batch_size": 1}
        created = httpx.post(
            f"{url}/styles",
            files={"image": ("s.jpg", handle, "image/jpeg")},
            data={"name": "Audit run", "params": json.dumps({**params, "width": 0.25})},
            timeout=30,
        )
    assert created.status_code == 202, created.text
    style_id = created.json()["id"]
    context, page = _offline_page(browser, url, viewport)
    name = "phone" if viewport is PHONE else "laptop"
    try:
        page.goto(url + "/")
        page.wait_for_selector("#gallery input[value=scream]", state="attached")
        # The stylize view with a result.
        page.set_input_files("#photo", str(root / "data/content/chelsea.png"))
        page.locator("#max-side").fill("128")
        page.click("#stylize-btn")
        page.wait_for_selector("#result:not([hidden])")
        stylize_view = _axe_violations(page, axe_js)
        page.screenshot(path=ARTIFACTS / f"a11y-{name}-stylize.png")
        # The styles and a training in progress (its bar and curve), details open.
        card = _card(page, "Audit run")
        card.locator(".ptext", has_text="step").wait_for(timeout=120_000)
        card.locator(".more summary").click()
        card.scroll_into_view_if_needed()
        training_view = _axe_violations(page, axe_js)
        page.screenshot(path=ARTIFACTS / f"a11y-{name}-training.png")
        # The enlarged picture.
        card.locator(".thumb-btn").click()
        viewer_view = _axe_violations(page, axe_js)
    finally:
        context.close()
        httpx.delete(f"{url}/styles/{style_id}", timeout=30)
    assert (stylize_view, training_view, viewer_view) == ([], [], [])


CONTRAST_JS = """
    (() => {
        const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
        const lum = (c) => {
            const [r, g, b] = rgb(c).map((v) => {
                v /= 255;
                return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
            });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        window.contrast = (a, b) => {
            const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
            return (hi + 0.05) / (lo + 0.05);
        };
    })();
"""


def test_focus_ring_borders_disabled_text_touch_targets_and_help(browser, stack) -> None:
    """What axe-core cannot see: non-text contrast, focus, disabled text, help lines."""
    url, _ = stack
    context, page = _offline_page(browser, url, PHONE)
    try:
        page.goto(url + "/")
        page.wait_for_selector("#gallery input[value=scream]", state="attached")
        page.wait_for_selector("#style-list li.card")
        page.evaluate(CONTRAST_JS)
        page.focus("#stylize-btn")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # keyboard focus: :focus-visible
        ring = page.evaluate(
            """() => {
                const s = getComputedStyle(document.activeElement);
                const page = getComputedStyle(document.body).backgroundColor;
                return [s.outlineStyle, contrast(s.outlineColor, 'rgb(255, 255, 255)'),
                        contrast(s.outlineColor, page)];
            }"""
        )
        assert ring[0] == "solid" and min(ring[1:]) >= 3, ring
        borders = page.evaluate(
            """() => ['.tile', '.card', '#style-name', '.card .thumb-btn'].map((sel) => {
                const s = getComputedStyle(document.querySelector(sel));
                return [sel, contrast(s.borderTopColor, 'rgb(255, 255, 255)')];
            })"""
        )
        assert all(ratio >= 3 for _, ratio in borders), borders
        disabled = page.evaluate(
            """() => {
                const b = document.querySelector('#train-btn');
                b.disabled = true;
                const s = getComputedStyle(b);
                const ratio = contrast(s.color, s.backgroundColor);
                b.disabled = false;
                return [ratio, s.opacity];
            }"""
        )
        assert disabled[0] >= 4.5 and disabled[1] == "1", disabled
        small = page.evaluate(
            """() => [...document.querySelectorAll(
                    'button, a.button, input, select, summary, textarea, .tile')]
                .filter((e) => e.getClientRects().length)
                .map((e) => [e.id || e.className || e.tagName, e.getBoundingClientRect()])
                .filter(([, r]) => r.width < 24 || r.height < 24)
                .map(([name, r]) => `${name} ${Math.round(r.width)}×${Math.round(r.height)}`)"""
        )
        assert small == [], small
        helps = page.evaluate(
            """() => ['#strength', '#preserve-color'].map((sel) =>
                document.getElementById(document.querySelector(sel)
                    .getAttribute('aria-describedby'))?.textContent.trim() ?? '')"""
        )
        assert all(len(text) > 20 for text in helps), helps
        # The id and the version are inside a closed "Details" section.
        first = page.locator("#style-list li.card").first
        assert first.locator("details.more .detail").is_hidden()
        assert "Id for the API" in first.locator(".detail").text_content()
        page.screenshot(path=ARTIFACTS / "a11y-phone-focus.png")
    finally:
        context.close()


def _measured_speed(url: str) -> dict:
    """The price of a default training, once the worker has published its measured speed."""
    for _ in range(120):  # it measures shortly after start
        priced = httpx.post(f"{url}/training/estimate", json={"params": {}}, timeout=10).json()
        if priced["estimated_seconds"] is not None:
            return priced
        time.sleep(1)
    pytest.fail(f"the worker published no training speed: {priced}")


def test_training_speeds_show_their_cost_and_a_long_run_asks_first(page, stack) -> None:
    url, _ = stack
    priced = _measured_speed(url)
    assert priced["speed"]["device"] == "cpu", priced
    page.goto(url + "/")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#speed option')]"
        ".every(o => o.textContent.includes('≈'))"
    )
    labels = page.locator("#speed option").all_text_contents()
    assert all("≈" in label for label in labels), labels
    assert page.input_value("#speed") == "draft"  # a CPU worker: the quick draft by default
    # The best quality takes hours on this CPU: the page asks, and "no" starts nothing.
    page.select_option("#speed", "best")
    page.set_input_files("#painting", str(REPO / "demo_styles/scream/style.jpg"))
    page.fill("#style-name", "Too long")
    questions: list[str] = []

    def decline(dialog) -> None:
        questions.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", decline)
    page.click("#train-btn")
    page.wait_for_timeout(1500)
    assert len(questions) == 1 and "Start it?" in questions[0], questions
    names = [s["name"] for s in httpx.get(f"{url}/styles", timeout=10).json()["items"]]
    assert "Too long" not in names


# ---------------------------------------------------------------- issue 26: the page

ESTIMATE = re.compile(r"≈ \d+ (s|min|h)\b")
#: The closed list's label and the room it has: its width less padding and the arrow.
LABEL_ROOM_JS = """() => {
    const select = document.querySelector('#speed');
    const style = getComputedStyle(select);
    const context = document.createElement('canvas').getContext('2d');
    context.font = style.font;
    const label = select.selectedOptions[0].textContent;
    const arrow = 24;
    const room = select.clientWidth - parseFloat(style.paddingLeft)
        - parseFloat(style.paddingRight) - arrow;
    return [label, context.measureText(label).width, room];
}"""


def test_after_a_training_the_form_keeps_the_speed_for_this_device(page, stack) -> None:
    """On a CPU worker the form went back to "Balanced · ≈ 11 h" after a training."""
    url, _ = stack
    assert _measured_speed(url)["speed"]["device"] == "cpu"
    page.goto(url + "/?tiny")  # a seconds-long training in the advanced field
    page.wait_for_function("() => [...window.speed.options].every(o => o.text.includes('≈'))")
    assert page.input_value("#speed") == "draft"  # a CPU worker: the quick draft
    page.set_input_files("#painting", str(REPO / "demo_styles/scream/style.jpg"))
    page.fill("#style-name", "Default kept")
    page.click("#train-btn")
    page.wait_for_function("() => /queued for training/.test(window['new-status'].textContent)")
    assert page.input_value("#params") == ""  # the form was reset for the next one...
    assert page.input_value("#speed") == "draft"  # ...to this device's speed
    page.wait_for_function("() => window['speed-estimate'].textContent.includes('600 steps')")
    assert ESTIMATE.match(page.text_content("#speed-estimate"))
    card = _card(page, "Default kept")
    card.locator(".badge", has_text="ready").wait_for(timeout=240_000)
    assert page.input_value("#speed") == "draft"  # and after it finished
    page.screenshot(path=ARTIFACTS / "11-form-after-training.png", full_page=True)
    httpx.delete(f"{url}/styles/{card.get_attribute('data-style-id')}", timeout=30)


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_training_estimate_shows_in_full(browser, stack, viewport) -> None:
    """The list cut "Quick draft (…) · ≈ 20 min" to "· ≈ 20" on a laptop, to nothing on
    a phone: the labels are short now, and the chosen one's estimate is a line below."""
    url, _ = stack
    _measured_speed(url)
    context, page = _offline_page(browser, url, viewport)
    name = "phone" if viewport is PHONE else "laptop"
    try:
        page.goto(url + "/")
        page.wait_for_function("() => [...window.speed.options].every(o => o.text.includes('≈'))")
        page.locator("#speed").scroll_into_view_if_needed()
        for value in ("draft", "balanced", "best"):
            page.select_option("#speed", value)
            # The closed list shows its whole label, the estimate included.
            label, needs, room = page.evaluate(LABEL_ROOM_JS)
            assert ESTIMATE.search(label) and needs <= room, (label, needs, room)
            # And the line under it: all of it on screen.
            line = page.locator("#speed-estimate")
            assert line.is_visible()
            text = line.text_content()
            assert ESTIMATE.match(text), text  # number and unit
            width, shown, right, screen = line.evaluate(
                "e => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().right, innerWidth]"
            )
            assert width <= shown and right <= screen, (text, width, shown, right, screen)
            if value == "draft":
                page.screenshot(path=ARTIFACTS / f"10-speed-estimate-{name}.png")
        page.screenshot(path=ARTIFACTS / f"10-page-{name}.png", full_page=True)
    finally:
        context.close()


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
