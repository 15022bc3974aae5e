"""The training speeds on the web page in a real browser (the session's stack and
Chromium, tests/e2e/conftest.py): each speed shows what it costs on the worker's measured
speed, a long run asks first, the form keeps this device's speed after a training, and the
estimate shows in full on a laptop and a phone. Screenshots: test-artifacts/web-ui/."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from browser_testing import (
    ARTIFACTS,
    LAPTOP,
    PHONE,
    REPO,
    offline_page,
    skip_without_browser,
    style_card,
)

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


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
    card = style_card(page, "Default kept")
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
    context, page = offline_page(browser, url, viewport)
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
