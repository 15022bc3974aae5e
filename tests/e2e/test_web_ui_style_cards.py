"""A style's card on the web page in a real browser (the session's stack and Chromium,
tests/e2e/conftest.py; issue 26): a queued style's place in line, train again with other
parameters, the style's details in the user's words with the painting enlarged, and the
quality score in words. Screenshots go to test-artifacts/web-ui/."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from browser_testing import ARTIFACTS, REPO, skip_without_browser, style_card

skip_without_browser()
pytestmark = pytest.mark.timeout(300)
TINY = {"image_size": 32, "style_size": 32, "batch_size": 1, "width": 0.25, "holdout": 1}


def _create(url: str, name: str, params: dict) -> dict:
    with (REPO / "demo_styles/scream/style.jpg").open("rb") as handle:
        r = httpx.post(
            f"{url}/styles",
            files={"image": ("s.jpg", handle, "image/jpeg")},
            data={"name": name, "params": json.dumps(params)},
            timeout=30,
        )
    assert r.status_code == 202, r.text
    return r.json()


def _wait_status(url: str, sid: str, wanted: set[str]) -> dict:
    deadline = time.monotonic() + 240  # a hang guard
    while (doc := httpx.get(f"{url}/styles/{sid}", timeout=10).json())["status"] not in wanted:
        assert time.monotonic() < deadline, doc
        time.sleep(0.5)
    return doc


def test_a_queued_style_shows_its_place_in_line(page, stack, pause_trainings) -> None:
    url, _ = stack
    # The one worker takes the first; the second waits behind it.
    first = _create(url, "Long ahead", {**TINY, "iterations": 100000})
    second = _create(url, "Waiting behind", {**TINY, "iterations": 100000})
    try:
        _wait_status(url, first["id"], {"training"})
        with pause_trainings():  # the worker stays busy with the first; its steps need not run
            page.goto(url + "/")
            card = style_card(page, "Waiting behind")
            card.wait_for()
            text = card.locator(".ptext")
            page.wait_for_function(
                "e => e.textContent.includes('in line')", arg=text.element_handle()
            )
            assert "waiting for a worker" not in text.text_content()
            assert text.text_content().startswith("next in line")
            page.screenshot(path=ARTIFACTS / "26-queued-place.png", full_page=True)
    finally:
        for sid in (second["id"], first["id"]):
            httpx.post(f"{url}/styles/{sid}/cancel", timeout=30)


def test_train_again_with_other_parameters(page, stack) -> None:
    url, _ = stack
    style = _create(url, "Retrained", {**TINY, "iterations": 3})
    _wait_status(url, style["id"], {"ready"})
    page.on("dialog", lambda dialog: dialog.accept())  # "it will take about …; start it?"
    page.goto(url + "/")
    card = style_card(page, "Retrained")
    card.wait_for()
    card.locator(".again").click()
    page.wait_for_selector("#retrain[open]")
    page.screenshot(path=ARTIFACTS / "26-retrain-dialog.png")
    page.select_option("#retrain-steps", "600")
    page.locator("#retrain-balance").fill("1")
    assert page.text_content("#retrain-balance-out") == "more of the painting"
    page.select_option("#retrain-size", "128")
    page.click("#retrain-go")
    page.wait_for_function(
        "e => e.textContent.includes('retrain')", arg=card.locator(".badge").element_handle()
    )
    doc = httpx.get(f"{url}/styles/{style['id']}", timeout=10).json()
    httpx.post(f"{url}/styles/{style['id']}/cancel", timeout=30)
    params = doc["params"]
    assert (params["iterations"], params["image_size"]) == (600, 128)
    assert params["style_weight"] == pytest.approx(3e-4)
    assert params["width"] == TINY["width"]  # the rest as last time


def test_style_details_speak_user_and_the_painting_enlarges(page, stack) -> None:
    url, _ = stack
    page.goto(url + "/")
    card = style_card(page, "The Scream")
    card.wait_for()
    card.locator(".more summary").click()
    detail = card.locator(".detail").text_content()
    assert "run:" not in detail and "final loss" not in detail, detail
    assert "Shared style: made without an API key" in detail  # demo styles have no owner
    assert "Id for the API and the command line: scream" in detail
    card.locator(".thumb-btn").click()
    viewer = page.locator("#viewer-img")
    viewer.wait_for()
    assert "/styles/scream/image" in viewer.get_attribute("src")
    assert "painting" in page.text_content("#viewer-title")
    page.screenshot(path=ARTIFACTS / "26-painting-enlarged.png")
    page.click("#viewer-close")


def test_the_quality_score_reads_in_words(page, stack) -> None:
    url, _ = stack
    page.goto(url + "/")
    style_card(page, "The Scream").wait_for()
    # fillCard draws any document; these are the API's score states.
    texts = page.evaluate(
        """async () => {
            const { fillCard } = await import('/static/style-card.js');
            const card = document.querySelector('#style-card')
                .content.firstElementChild.cloneNode(true);
            const base = await (await fetch('/styles/scream')).json();
            const out = [];
            const done = {status: 'done', r_mean: 0.8312, bound: 'upper', photos: 'evaluation'};
            for (const score of [{status: 'scoring'}, done]) {
                fillCard(card, {...base, metrics: {score}});
                out.push(card.querySelector('.detail').textContent);
            }
            return out;
        }"""
    )
    assert "Quality score: scoring…" in texts[0]
    assert "Quality score at most 0.83" in texts[1]
