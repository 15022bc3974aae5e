"""The web page at ``/`` in a real browser: headless Chromium (Debian's package) driven by
Playwright against ``stylize up`` (Redis + worker + API). Screenshots of each screen go to
``test-artifacts/web-ui/``."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
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
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
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
    page.set_default_timeout(30_000)
    yield page
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-end.png", full_page=True)
    context.close()
    assert foreign == [], f"the page fetched outside {origin}: {foreign}"
    assert page_errors == [], page_errors


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
    page.screenshot(path=ARTIFACTS / "2-stylize-result.png", full_page=True)


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
    page.goto(url + "/?tiny")  # fills the advanced parameters with a seconds-long training
    page.wait_for_selector("#style-list li.card")
    assert '"iterations":4' in page.input_value("#params")
    page.set_input_files("#painting", str(REPO / "demo_styles/starry-night/style.jpg"))
    page.fill("#style-name", "Tiny starry")
    page.click("#train-btn")
    card = _card(page, "Tiny starry")
    card.wait_for()
    assert card.locator(".badge").text_content() in ("queued", "training", "ready")
    page.screenshot(path=ARTIFACTS / "4-training-started.png", full_page=True)
    seen: set[float] = set()

    def done() -> bool:
        value = card.locator(".bar").evaluate("b => b.hasAttribute('value') ? b.value : -1")
        seen.add(value)
        return card.locator(".badge").text_content() in ("ready", "failed", "canceled")

    deadline = 240
    while not done():
        assert deadline > 0, "training did not finish"
        page.wait_for_timeout(250)
        deadline -= 0.25
    assert card.locator(".badge").text_content() == "ready", card.text_content()
    assert min(seen) < 1  # queued (indeterminate) or part way, then full
    assert card.locator(".bar").evaluate("b => b.value") == 1
    assert "done" in card.locator(".ptext").text_content()
    assert "version 1" in card.locator(".detail").text_content()
    # The new style joins the gallery of usable styles.
    page.wait_for_selector("#gallery label.tile:has-text('Tiny starry')")
    page.screenshot(path=ARTIFACTS / "5-training-done.png", full_page=True)

    # Train it again: version 1 stays in the gallery while the run goes on, then version 2.
    card.locator(".again").click()
    deadline = 240
    while "version 2" not in card.locator(".detail").text_content():
        assert deadline > 0, card.text_content()
        assert card.locator(".badge").text_content() in ("queued", "training", "ready")
        assert page.is_visible("#gallery label.tile:has-text('Tiny starry')")
        page.wait_for_timeout(250)
        deadline -= 0.25
    assert card.locator(".badge").text_content() == "ready"
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


def test_the_page_does_not_shadow_the_api(stack) -> None:
    url, _ = stack
    assert httpx.get(f"{url}/", timeout=10).headers["content-type"].startswith("text/html")
    assert httpx.get(f"{url}/static/app.js", timeout=10).status_code == 200
    assert httpx.get(f"{url}/styles", timeout=10).json()["items"]
    schema = httpx.get(f"{url}/openapi.json", timeout=10).json()
    assert "/" not in schema["paths"]


def test_presets_show_their_cost_and_a_long_run_asks_first(page, stack) -> None:
    url, _ = stack
    # The worker publishes its measured speed shortly after start.
    for _ in range(120):
        priced = httpx.post(f"{url}/training/estimate", json={"params": {}}, timeout=10).json()
        if priced["estimated_seconds"] is not None:
            break
        page.wait_for_timeout(1000)
    assert priced["speed"]["device"] == "cpu", priced
    page.goto(url + "/")
    page.wait_for_function(
        "[...document.querySelectorAll('#preset option')].every(o => o.textContent.includes('≈'))"
    )
    labels = page.locator("#preset option").all_text_contents()
    assert all("≈" in label for label in labels), labels
    assert page.input_value("#preset") == "fast"  # a CPU worker: the fast preset by default
    # The quality preset takes hours on this CPU: the page asks, and "no" starts nothing.
    page.select_option("#preset", "quality")
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
