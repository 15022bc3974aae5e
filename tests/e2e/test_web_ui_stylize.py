"""Stylizing a photo on the web page in a real browser (the session's stack and Chromium,
tests/e2e/conftest.py): the result at the size the API gives, before/after, 1:1 and copy;
print size; a bad upload's error; a photo dropped or pasted; the style tiles; the result in
view on a phone; a long stylize's progress and cancel. Screenshots: test-artifacts/web-ui/."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from browser_testing import (
    ARTIFACTS,
    PHONE,
    TILE_PIXELS,
    assert_in_view,
    offline_page,
    shown_at,
    skip_without_browser,
)
from PIL import Image

skip_without_browser()
pytestmark = pytest.mark.timeout(300)


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
    assert_in_view(page, "#result")
    page.screenshot(path=ARTIFACTS / "2-stylize-result.png")  # the viewport: what one sees

    # Before/after on the same frame: the original covers the result up to the slider.
    assert shown_at(page, 0.25, 0.75) == ["result", "result"]
    page.locator("#split").fill("50")
    assert shown_at(page, 0.25, 0.75) == ["original", "result"]
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
    """Over ``TILE_PIXELS`` the service stylizes by exact tiled inference (its large lane)."""
    url, root = stack
    big = tmp_path / "big.jpg"
    Image.open(root / "data/content/chelsea.png").convert("RGB").resize((1280, 960)).save(big)
    assert TILE_PIXELS < 1280 * 960
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
    assert tuple(size) == (1280, 960)


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
    context, page = offline_page(browser, url, PHONE)
    try:
        page.goto(url + "/")
        page.wait_for_selector("#gallery input[value=scream]", state="attached")
        page.set_input_files("#photo", str(root / "data/content/astronaut.png"))
        page.locator("#max-side").fill("256")
        page.click("#stylize-btn")
        page.wait_for_selector("#result:not([hidden])")
        assert_in_view(page, "#result")
        page.screenshot(path=ARTIFACTS / "9-phone-result.png")
    finally:
        context.close()


def test_a_long_stylize_shows_progress_and_can_be_canceled(page, stack, tmp_path: Path) -> None:
    url, root = stack
    # A print-size photo (over 2048², the default tile threshold): the tiled lane, minutes on
    # a CPU, canceled.
    big = tmp_path / "big.jpg"
    Image.open(root / "data/content/chelsea.png").convert("RGB").resize((2600, 1700)).save(big)
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.set_input_files("#photo", str(big))
    page.check("#print-size")
    page.click("#stylize-btn")
    page.wait_for_selector("#stylize-progress:not([hidden])")
    page.wait_for_function("() => document.querySelector('#stylize-bar').value > 0")
    assert "Stylizing in tiles" in page.text_content("#stylize-status")
    page.screenshot(path=ARTIFACTS / "26-stylize-progress.png")
    page.click("#stylize-cancel")
    page.wait_for_function(
        "() => document.querySelector('#stylize-status').textContent === 'Canceled.'"
    )
    assert page.is_hidden("#stylize-progress") and page.is_hidden("#stylize-error")
    assert page.is_hidden("#result-box")
