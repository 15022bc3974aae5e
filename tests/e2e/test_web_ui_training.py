"""Training a style from the web page in a real browser (the session's stack and Chromium,
tests/e2e/conftest.py): a tiny training from the form to done, told while away, trained
again to version 2; canceled from its card; the form's own checks. Screenshots:
test-artifacts/web-ui/."""

from __future__ import annotations

import json

import pytest
from browser_testing import ARTIFACTS, REPO, skip_without_browser, style_card

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


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
    card = style_card(page, "Tiny starry")
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
    card = style_card(page, "Endless scream")
    card.locator(".cancel").click()
    badge = card.locator(".badge")
    page.wait_for_function("b => b.textContent === 'canceled'", arg=badge.element_handle())
    assert card.locator(".cancel").is_hidden() and card.locator(".again").is_visible()
    assert page.is_hidden("#styles-error")
    page.reload()  # the server agrees
    page.wait_for_function("b => b.textContent === 'canceled'", arg=badge.element_handle())


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
