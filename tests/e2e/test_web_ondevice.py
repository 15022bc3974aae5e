""" "Stylize on this device" in a real browser (headless Debian Chromium, Playwright): the
photo is stylized by onnxruntime-web in the page's worker, no request carries it, the
result equals the service's own within a small tolerance, the model comes from the
browser's cache the second time, and without onnxruntime-web the button is not offered."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from browser_testing import REPO, axe_script, skip_without_browser
from PIL import Image
from service_testing import running_service

from service import webvendor
from stylenet import samples

skip_without_browser()  # the session's Chromium: the ``browser`` fixture of conftest.py
if not webvendor.installed() and not os.environ.get("CI"):
    pytest.skip("onnxruntime-web is not installed (make setup)", allow_module_level=True)
pytestmark = pytest.mark.timeout(300)
#: axe-core as the ``axe_js`` fixture installs it (the audit below runs when it is there).
AXE = axe_script()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ondevice")
    env = {
        "STYLIZE_MODEL_STORE": (root / "models").as_uri(),
        "STYLIZE_DEMO_STYLES_DIR": str(REPO / "demo_styles"),
        "STYLIZE_REDIS_URL": "redis://127.0.0.1:1/0",  # stylizing needs no Redis
        "STYLIZE_CPU_DTYPE": "float32",  # the server's answer is then the float32 reference
    }
    with running_service(root, env) as url:
        yield url


@pytest.fixture(scope="module")
def photo_png(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("photo") / "crop.png"
    samples.sample("astronaut").crop((120, 100, 213, 167)).save(path)  # 93×67, odd sides
    return path, path.read_bytes()


def _pixels(page) -> np.ndarray:
    """The on-device result's pixels, read back from its <img> in the page."""
    flat, width, height = page.evaluate(
        """() => {
            const img = document.querySelector('#ondevice-img');
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            return [Array.from(g.getImageData(0, 0, c.width, c.height).data), c.width, c.height];
        }"""
    )
    return np.array(flat, dtype=np.int16).reshape(height, width, 4)[..., :3]


def test_stylize_on_this_device_keeps_the_photo_and_matches_the_server(
    browser, service: str, photo_png: tuple[Path, bytes]
) -> None:
    path, data = photo_png
    context = browser.new_context()
    origin = urlsplit(service).netloc
    requests: list[tuple[str, str, bytes]] = []
    # Every request of the page and its worker; anything leaving the service is refused.
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if urlsplit(route.request.url).netloc == origin else route.abort()
        ),
    )
    context.on("request", lambda r: requests.append((r.method, r.url, r.post_data_buffer or b"")))
    problems: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.set_default_timeout(120_000)
    page.goto(service + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.wait_for_selector("#ondevice-btn")
    assert "1024 px" in page.text_content("#ondevice-note")  # the limit it supports
    assert "stays on this device" in page.text_content("#ondevice-note")
    page.set_input_files("#photo", str(path))
    page.locator("#gallery label.tile", has=page.locator("input[value=scream]")).click()
    page.click("#ondevice-btn")
    page.wait_for_selector("#ondevice-result:not([hidden]), #ondevice-error:not([hidden])")
    assert page.is_hidden("#ondevice-error"), page.text_content("#ondevice-error")
    status = page.text_content("#ondevice-status")
    assert "Done on this device in" in status and "93×67" in status, status
    on_device = _pixels(page)
    if AXE.is_file():  # the on-device controls and result pass the page's accessibility audit
        page.evaluate("() => {\n" + AXE.read_text() + "\n}")
        found = page.evaluate(
            "async () => (await axe.run({include: [['#ondevice'], ['#ondevice-result']]}))"
            ".violations"
        )
        assert [v["id"] for v in found if v["impact"] in ("serious", "critical")] == []

    # Again: the model now comes from the browser's cache (a HEAD for its sha256 only).
    before = len(requests)
    page.click("#ondevice-btn")
    page.wait_for_function(
        "() => document.querySelector('#ondevice-status').textContent.includes('cache')"
    )
    exports = [(m, u) for m, u, _ in requests[before:] if "/export" in u]
    assert [m for m, _ in exports] == ["HEAD"], exports
    context.close()
    assert problems == [], problems

    # No request carried the photo, and none stylized on the server.
    assert all(data[:4096] not in body for _, _, body in requests)
    assert not any(urlsplit(u).path.startswith("/stylize") for _, u, _ in requests)
    # (The page's only POSTs are the training form's estimates: a few bytes of JSON.)
    sent = [(urlsplit(u).path, len(body)) for m, u, body in requests if m not in ("GET", "HEAD")]
    assert all(path == "/training/estimate" and size < 2048 for path, size in sent), sent

    served = httpx.post(
        f"{service}/stylize",
        params={"style": "scream", "format": "png"},
        content=data,
        headers={"content-type": "image/png"},
        timeout=60,
    )
    assert served.status_code == 200, served.text
    reference = np.asarray(Image.open(io.BytesIO(served.content)).convert("RGB"), np.int16)
    assert on_device.shape == reference.shape == (67, 93, 3)
    difference = np.abs(on_device - reference)
    # float16 weights in the browser's model, float32 on the server: a level at most, here
    # and there.
    assert difference.max() <= 2, difference.max()
    assert difference.mean() < 0.5, difference.mean()


def test_without_onnxruntime_web_the_button_is_not_offered(browser, service: str) -> None:
    context = browser.new_context()
    context.route("**/static/vendor/**", lambda route: route.fulfill(status=404))
    page = context.new_page()
    page.goto(service + "/")
    page.wait_for_selector("#gallery input[value=scream]", state="attached")
    page.wait_for_load_state("networkidle")
    assert page.locator("#ondevice-btn").count() == 0
    assert page.is_visible("#stylize-btn")
    context.close()


def test_only_the_worker_may_compile_webassembly(service: str) -> None:
    page = httpx.get(f"{service}/").headers["content-security-policy"]
    worker = httpx.get(f"{service}/static/ondevice-worker.js").headers["content-security-policy"]
    assert "'wasm-unsafe-eval'" not in page and "'unsafe-eval'" not in page
    assert "script-src 'self' 'wasm-unsafe-eval';" in worker
    assert "'unsafe-eval'" not in worker.replace("'wasm-unsafe-eval'", "")
