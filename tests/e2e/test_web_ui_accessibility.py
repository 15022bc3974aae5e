"""The web page's accessibility in a real browser (the session's stack and Chromium,
tests/e2e/conftest.py): it fits a phone, every control has a name, axe-core (from the npm
registry, installed once into the cache) finds nothing serious at 1280×800 and 390×844, and
what axe-core cannot see: focus ring, borders, disabled text, touch targets, help lines.
Screenshots: test-artifacts/web-ui/."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from browser_testing import (
    ARTIFACTS,
    LAPTOP,
    PHONE,
    REPO,
    axe_violations,
    offline_page,
    skip_without_browser,
    style_card,
)

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


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


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_no_serious_accessibility_violations(
    browser, stack, pause_trainings, axe_js: Path, viewport
) -> None:
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
    context, page = offline_page(browser, url, viewport)
    name = "phone" if viewport is PHONE else "laptop"
    try:
        page.goto(url + "/")
        page.wait_for_selector("#gallery input[value=scream]", state="attached")
        # The stylize view with a result.
        page.set_input_files("#photo", str(root / "data/content/chelsea.png"))
        page.locator("#max-side").fill("128")
        page.click("#stylize-btn")
        page.wait_for_selector("#result:not([hidden])")
        stylize_view = axe_violations(page, axe_js)
        page.screenshot(path=ARTIFACTS / f"a11y-{name}-stylize.png")
        # The styles and a training in progress (its bar and curve), details open.
        card = style_card(page, "Audit run")
        card.locator(".ptext", has_text="step").wait_for(timeout=120_000)
        with pause_trainings():  # the bar and curve stay; the 100,000 steps need not run
            card.locator(".more summary").click()
            card.scroll_into_view_if_needed()
            training_view = axe_violations(page, axe_js)
            page.screenshot(path=ARTIFACTS / f"a11y-{name}-training.png")
            # The enlarged picture.
            card.locator(".thumb-btn").click()
            viewer_view = axe_violations(page, axe_js)
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
    context, page = offline_page(browser, url, PHONE)
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
