"""Results on the page (issue 26 item e) in a real browser (the session's stack and
Chromium, tests/e2e/conftest.py): a history of results kept in the browser (IndexedDB)
that survives a reload, opens again in the result viewer, downloads and deletes; one
photo in two styles side by side; a batch of photos (chosen or dropped together)
downloaded as one zip that the page writes itself (service/static/zip.js), failed photos
listed with their error. Screenshots of the page at both sizes go to
/tmp/shots/results-*.png."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser_testing import (
    ARTIFACTS,
    LAPTOP,
    PHONE,
    axe_violations,
    offline_page,
    shown_at,
    skip_without_browser,
)
from PIL import Image

from stylenet import samples

skip_without_browser()
pytestmark = pytest.mark.timeout(300)
SHOTS = Path("/tmp/shots")
ITEMS = "#history-list li"


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real photos (200×150): the tests stylize them at 128 px."""
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name, ext in (("chelsea", "jpg"), ("rocket", "png"), ("coffee", "webp")):
        out[name] = folder / f"{name}.{ext}"
        samples.sample(name).convert("RGB").resize((200, 150)).save(out[name])
    out["broken"] = folder / "broken.png"
    out["broken"].write_bytes(b"not an image at all, only a name that says png")
    return out


def _open(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.wait_for_selector("#gallery input[value=starry-night]", state="attached")


def _choose(page, style: str, max_side: str = "128") -> None:
    page.locator("#gallery label.tile", has=page.locator(f"input[value={style}]")).click()
    page.locator("#max-side").fill(max_side)


def _stylize(page, photo: Path, style: str) -> None:
    page.set_input_files("#photo", str(photo))
    _choose(page, style)
    page.click("#stylize-btn")
    page.wait_for_function(
        "() => document.querySelector('#stylize-status').textContent.startsWith('Done')"
    )


def _kept(page, count: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('{ITEMS}').length === {count}")


def _version(url: str, style: str) -> int:
    return httpx.get(f"{url}/styles/{style}", timeout=10).json()["current_version"]


def test_results_are_kept_across_a_reload_and_open_again(page, stack, photos) -> None:
    url, _ = stack
    _open(page, url)
    assert page.is_visible("#history-empty")
    _stylize(page, photos["chelsea"], "scream")
    assert "The Scream" in page.text_content("#result-caption")
    _kept(page, 1)
    page.locator("#strength").fill("0.5")
    page.check("#preserve-color")
    _stylize(page, photos["rocket"], "starry-night")
    _kept(page, 2)
    page.reload()
    _kept(page, 2)  # IndexedDB keeps them
    newest, oldest = page.locator(ITEMS).nth(0), page.locator(ITEMS).nth(1)
    caption = newest.locator(".caption").text_content()
    assert f"Starry Night, version {_version(url, 'starry-night')}" in caption, caption
    assert "strength 0.50" in caption and "up to 128 px" in caption
    assert "photo's colours kept" in caption and "128×96" in caption
    assert newest.locator(".name").text_content() == "rocket.png"
    caption = oldest.locator(".caption").text_content()
    assert f"The Scream, version {_version(url, 'scream')}" in caption, caption
    assert "strength 1.00" in caption and "colours" not in caption
    # A thumbnail pair each, decoded.
    pairs = page.evaluate(
        f"() => [...document.querySelectorAll('{ITEMS} .pair img')].map(i => i.naturalWidth)"
    )
    assert len(pairs) == 4 and all(w > 0 for w in pairs), pairs

    # Opened again in the result viewer, the kept photo under the before/after slider.
    assert page.is_hidden("#result-box")
    oldest.locator(".open").click()
    page.wait_for_selector("#result:not([hidden])")
    assert page.text_content("#result-caption").startswith("chelsea.jpg: The Scream")
    assert page.evaluate("() => [result.naturalWidth, result.naturalHeight]") == [128, 96]
    assert shown_at(page, 0.5) == ["result"]
    page.locator("#split").fill("100")
    assert shown_at(page, 0.5) == ["original"]
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "chelsea-scream.jpg"

    # Downloaded from the list.
    with page.expect_download() as download:
        newest.locator(".download").click()
    assert download.value.suggested_filename == "rocket-starry-night.png"
    with Image.open(download.value.path()) as kept:
        assert kept.size == (128, 96)

    # Deleted one by one, then all cleared; a reload agrees each time.
    newest.locator(".delete").click()
    _kept(page, 1)
    page.reload()
    _kept(page, 1)
    assert page.locator(ITEMS).first.locator(".name").text_content() == "chelsea.jpg"
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete every kept result…?"
    page.click("#history-clear")
    _kept(page, 0)
    page.reload()
    page.wait_for_selector("#history-empty:not([hidden])")
    _kept(page, 0)


def test_the_history_keeps_the_newest_results(page, stack, photos) -> None:
    url, _ = stack
    _open(page, url)
    kept = page.evaluate(
        """async (bytes) => {
            const { stylizeOnce } = await import('/static/stylize-request.js');
            const history = await import('/static/history.js');
            const photo = new File([new Uint8Array(bytes)], 'p.jpg', {type: 'image/jpeg'});
            const detail = await stylizeOnce(photo, 'scream');
            const ids = [];
            for (let i = 0; i < history.KEEP + 2; i++) ids.push(await history.remember(detail));
            const left = (await history.keptResults()).map((r) => r.id);
            return {ids, left, keep: history.KEEP};
        }""",
        list(photos["chelsea"].read_bytes()),
    )
    assert kept["keep"] == 30
    assert kept["left"] == kept["ids"][2:]  # the two oldest went
    _kept(page, 30)


def test_two_styles_side_by_side(page, stack, photos) -> None:
    url, _ = stack
    _open(page, url)
    page.set_input_files("#photo", str(photos["coffee"]))
    _choose(page, "scream")
    page.click("#compare summary")
    page.select_option("#compare-style", "starry-night")
    sent: list[bytes] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data_buffer) if r.url.endswith("/stylize") else None,
    )
    page.click("#compare-btn")
    sides = page.locator("#compare-result figure")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare-result img')]"
        ".filter(i => i.complete && i.naturalWidth).length === 2"
    )
    assert len(sent) == 2
    assert [b'name="style"\r\n\r\nscream\r\n' in body for body in sent].count(True) == 1
    assert [b'name="style"\r\n\r\nstarry-night\r\n' in body for body in sent].count(True) == 1
    assert "The Scream" in sides.nth(0).locator("figcaption").text_content()
    assert "Starry Night" in sides.nth(1).locator("figcaption").text_content()
    assert page.text_content("#compare-status") == "Both done."
    images = []
    for n in range(2):
        with page.expect_download() as download:
            sides.nth(n).locator("a").click()
        with Image.open(download.value.path()) as image:
            images.append(np.asarray(image.convert("RGB"), dtype=np.float32))
    assert images[0].shape == images[1].shape == (96, 128, 3)
    assert np.abs(images[0] - images[1]).mean() > 10  # two styles, two paintings
    # Next to each other on a laptop.
    boxes = [sides.nth(n).bounding_box() for n in range(2)]
    assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]
    _kept(page, 2)


def _zip_of(download) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes()))
    assert archive.testzip() is None  # every CRC-32 checks out
    return archive


def test_photos_dropped_together_are_a_batch_in_one_zip(page, stack, photos) -> None:
    url, _ = stack
    _open(page, url)
    _choose(page, "scream")
    make_files = """(files) => {
        const transfer = new DataTransfer();
        for (const [bytes, name, type] of files)
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type}));
        return transfer;
    }"""
    dropped = [
        [list(photos["chelsea"].read_bytes()), "chelsea.jpg", "image/jpeg"],
        [list(photos["rocket"].read_bytes()), "rocket.png", "image/png"],
    ]
    transfer = page.evaluate_handle(make_files, dropped)
    page.dispatch_event("#stylize-h", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#batch[open]")
    assert page.locator("#batch-list li").count() == 2
    assert page.is_hidden("#photo-info")  # not taken as the single photo
    page.click("#batch-go")
    page.wait_for_selector("#batch-zip:not([hidden])")
    assert page.text_content("#batch-status") == "2 of 2 done."
    with page.expect_download() as download:
        page.click("#batch-zip")
    assert download.value.suggested_filename == "stylized-2-photos.zip"
    archive = _zip_of(download.value)
    assert archive.namelist() == ["chelsea-scream.jpg", "rocket-scream.png"]
    for name in archive.namelist():
        with Image.open(archive.open(name)) as image:
            image.load()
            assert image.size == (128, 96)
    _kept(page, 2)


def test_a_batch_lists_failed_photos_and_zips_the_rest(page, stack, photos) -> None:
    url, _ = stack
    _open(page, url)
    _choose(page, "starry-night")
    page.click("#batch summary")
    page.set_input_files("#batch-photos", [str(photos[n]) for n in ("chelsea", "broken", "coffee")])
    page.click("#batch-go")
    page.wait_for_selector("#batch-zip:not([hidden])")
    states = page.locator("#batch-list .state").all_text_contents()
    assert states[0].startswith("done") and states[2].startswith("done"), states
    assert states[1].startswith("failed: ") and "image" in states[1], states
    assert page.text_content("#batch-status") == "2 of 3 done, 1 failed."
    page.screenshot(path=ARTIFACTS / "results-batch-failed.png", full_page=True)
    with page.expect_download() as download:
        page.click("#batch-zip")
    archive = _zip_of(download.value)
    assert archive.namelist() == ["chelsea-starry-night.jpg", "coffee-starry-night.webp"]
    for name in archive.namelist():
        with Image.open(archive.open(name)) as image:
            image.load()


def test_the_zip_writer_on_its_own(page, stack) -> None:
    url, _ = stack
    page.goto(url + "/")
    out = page.evaluate(
        """async () => {
            const { crc32, zipBlob } = await import('/static/zip.js');
            const blob = await zipBlob([
                {name: 'ünï/cödé.txt', blob: new Blob(['hello, zip'])},
                {name: 'empty', blob: new Blob([])},
                {name: 'again.txt', blob: new Blob(['x'.repeat(70000)])},
            ]);
            const check = crc32(new TextEncoder().encode('123456789'));
            return {check, type: blob.type, bytes: [...new Uint8Array(await blob.arrayBuffer())]};
        }"""
    )
    assert out["check"] == 0xCBF43926  # the standard check value of CRC-32
    assert out["type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(bytes(out["bytes"])))
    assert archive.testzip() is None
    assert archive.namelist() == ["ünï_cödé.txt", "empty", "again.txt"]
    assert archive.read("ünï_cödé.txt") == b"hello, zip"
    assert archive.read("empty") == b"" and archive.read("again.txt") == b"x" * 70000
    assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_results_are_accessible_and_fit_the_screen(
    browser, stack, photos, axe_js: Path, viewport
) -> None:
    """axe-core and the layout with a result, its history, two sides and a batch."""
    url, _ = stack
    name = "phone" if viewport is PHONE else "laptop"
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page = offline_page(browser, url, viewport)
    try:
        _open(page, url)
        _stylize(page, photos["chelsea"], "scream")
        _kept(page, 1)
        page.click("#compare summary")
        page.select_option("#compare-style", "starry-night")
        page.click("#compare-btn")
        page.wait_for_selector("#compare-result figure >> nth=1")
        page.click("#batch summary")
        page.set_input_files("#batch-photos", [str(photos[n]) for n in ("rocket", "broken")])
        page.click("#batch-go")
        page.wait_for_selector("#batch-zip:not([hidden])")
        _kept(page, 4)
        violations = axe_violations(page, axe_js)
        overflow = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        page.screenshot(path=SHOTS / f"results-{name}.png", full_page=True)
        page.locator("#history").scroll_into_view_if_needed()
        page.screenshot(path=SHOTS / f"results-{name}-history.png")
    finally:
        context.close()
    assert violations == []
    assert overflow[0] <= overflow[1], overflow
