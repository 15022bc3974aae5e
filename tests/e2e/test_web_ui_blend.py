"""The page blends two styles of one base (issue 27) in a real browser (the session's
Chromium and stack, tests/e2e/conftest.py, with the family in its store for the test
only): the second style offers only styles that share a base, the slider sets the
weights, and the result is the service's blend. Screenshots in test-artifacts/web-ui/."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from blend_testing import CHILD, build_family_store
from browser_testing import ARTIFACTS, REPO, skip_without_browser
from PIL import Image

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def family_in_store(stack: tuple[str, Path], tiny_generator_bytes: bytes) -> Iterator[None]:
    """The family, written straight into the shared stack's store for this test only.

    Deleted after it (through the API, as a user would): while they exist, the family's
    styles would be warm starts (``init: auto``) of other tests' trainings.
    """
    url, root = stack
    painting = (REPO / "demo_styles/scream/style.jpg").read_bytes()
    _, weights = build_family_store(root / "data", tiny_generator_bytes, painting)
    try:
        yield
    finally:
        for style_id in sorted(weights, key=lambda s: s != CHILD):  # stored over a: first
            gone = httpx.delete(f"{url}/styles/{style_id}", timeout=30)
            assert gone.status_code in (200, 204), gone.text


def test_blend_two_styles_with_a_slider(page, stack, family_in_store: None) -> None:
    url, root = stack
    photo = root / "data/content/chelsea.png"
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=a]", state="attached")
    # A demo style shares no base with anything: nothing to blend it with.
    page.locator("#gallery label.tile", has=page.locator("input[value=scream]")).click()
    page.click("#blend summary")
    assert "No style shares a base" in page.text_content("#blend-style option")
    # Style a blends with b and c (and child, started from a), never with lone.
    page.locator("#gallery label.tile", has=page.locator("input[value=a]")).click()
    offered = page.eval_on_selector_all("#blend-style option", "os => os.map(o => o.value)")
    assert set(offered) == {"", "b", "c", "child"}, offered
    page.select_option("#blend-style", "b")
    page.locator("#blend-weight").fill("0.3")
    assert "70 % / 30 %" in page.text_content("#blend-out")
    page.set_input_files("#photo", str(photo))
    page.locator("#max-side").fill("128")
    page.click("#stylize-btn")
    page.wait_for_selector("#result:not([hidden])")
    assert "blended with 30 % of" in page.get_attribute("#result", "alt")
    assert page.get_attribute("#download", "download").endswith("-a-70-b-30.png")
    page.screenshot(path=ARTIFACTS / "blend-result.png")
    # The shown pixels (a canvas: the page's CSP keeps fetch() off its blob: URLs).
    width, height, rgba = page.evaluate(
        """() => {
            const c = document.createElement("canvas");
            [c.width, c.height] = [result.naturalWidth, result.naturalHeight];
            const g = c.getContext("2d");
            g.drawImage(result, 0, 0);
            return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)];
        }"""
    )
    with photo.open("rb") as handle:
        direct = httpx.post(
            f"{url}/stylize",
            files={"image": ("chelsea.png", handle, "image/png")},
            data={"style": "a:0.7,b:0.3", "max_side": "128"},
            timeout=60,
        )
    assert direct.status_code == 200, direct.text
    got = np.array(rgba, dtype=np.int16).reshape(height, width, 4)[..., :3]
    want = np.asarray(Image.open(io.BytesIO(direct.content)).convert("RGB"), dtype=np.int16)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1
