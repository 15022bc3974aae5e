"""A clip on the web page (issue 29) in a real browser (the session's stack and
Chromium, tests/e2e/conftest.py): picked on the photo card, stylized by a job on the
stack's worker (POST /videos), its progress followed, and the result playing beside the
original. Screenshots: test-artifacts/web-ui/."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_testing import ARTIFACTS, skip_without_browser

from tests.clip_testing import make_clip

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


def test_a_clip_is_stylized_by_a_job_and_plays_beside_the_original(
    page, stack, tmp_path: Path
) -> None:
    url, _ = stack
    clip = tmp_path / "walk.webm"  # VP9: every Chromium build plays it
    clip.write_bytes(make_clip("webm", frames=4, width=64, height=48))
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.set_input_files("#photo", str(clip))
    page.locator("#gallery label.tile", has=page.locator("input[value=scream]")).click()
    page.click("#stylize-btn")
    page.wait_for_selector("#clip-box:not([hidden])")
    # The original plays at once, from the picked file.
    page.wait_for_function("() => document.querySelector('#clip-original video')?.readyState >= 2")
    # The job's stream said something before the result came.
    page.wait_for_function(
        "() => /Stylizing the clip|Waiting for the worker|Done/.test("
        "document.querySelector('#stylize-status').textContent)"
    )
    page.wait_for_selector("#clip-result video", timeout=240_000)
    # A decoded frame of the result: HAVE_CURRENT_DATA, and its size is the clip's.
    page.wait_for_function("() => document.querySelector('#clip-result video').readyState >= 2")
    size = page.evaluate(
        "() => { const v = document.querySelector('#clip-result video');"
        " return [v.videoWidth, v.videoHeight, v.currentSrc]; }"
    )
    assert size[:2] == [64, 48]
    assert "/videos/" in size[2] and size[2].endswith("/result")
    assert page.text_content("#stylize-status").startswith("Done: 4 frames")
    assert page.is_hidden("#stylize-error")
    page.screenshot(path=ARTIFACTS / "29-clip-result.png", full_page=True)
