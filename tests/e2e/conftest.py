"""Fixtures of the browser tests (``test_web_*.py``): one ``stylize up`` stack (Redis,
worker, API) and one Chromium for all of them, a fresh offline page per test, and
axe-core installed once. Helpers and constants: ``tests/browser_testing.py``.

The tests share the stack's store and its one worker: each gives the styles it creates
names of their own and cancels or deletes the trainings it leaves running, so that the
next test finds the worker free; styles written straight into the store (the blend
test's family) are deleted after their test, or they would be warm starts (``init:
auto``) of later trainings. A test whose training is only scenery (a bar on the page, a
style to cancel) freezes it with ``pause_trainings`` once it runs, so that a
100,000-step run does not take a share of the CPU for the rest of the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_testing import (
    ARTIFACTS,
    AXE_VERSION,
    CHROMIUM,
    CHROMIUM_ARGS,
    LAPTOP,
    TILE_PIXELS,
    axe_folder,
    axe_script,
    offline_page,
)
from stack_testing import running_stack, trainings_paused


@pytest.fixture(scope="session")
def axe_js() -> Path:
    """axe-core's ``axe.min.js`` from the npm registry, installed once into the cache."""
    script = axe_script()
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("the accessibility audit needs npm (apt-get install npm)")
            pytest.skip("no npm to install axe-core with")
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(axe_folder()),
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return script


@pytest.fixture(scope="session")
def stack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, int]]:
    """``stylize up`` on a free port, shared by the browser tests: URL, root, launcher pid."""
    root = tmp_path_factory.mktemp("web-stack")
    # Tiled inference from 1024² px instead of 2048²: the print-size tests exercise the
    # large-image lane with a 1.2-megapixel photo, not minutes of CPU at 4.3 megapixels.
    with running_stack(root, STYLIZE_TILE_PIXELS=str(TILE_PIXELS)) as (url, process):
        yield url, root, process.pid


@pytest.fixture(scope="session")
def stack(stack_process: tuple[str, Path, int]) -> tuple[str, Path]:
    """The shared stack's URL and its root."""
    url, root, _ = stack_process
    return url, root


@pytest.fixture
def pause_trainings(
    stack_process: tuple[str, Path, int],
) -> Callable[[], AbstractContextManager[int]]:
    """``with pause_trainings():`` freezes the shared stack's running trainings for the
    block (:func:`stack_testing.trainings_paused`)."""
    return lambda: trainings_paused(stack_process[2])


class _Chromium:
    """One headless Chromium, started by the first page test and closed after the last.

    Not a session fixture: Playwright's sync API keeps an asyncio loop running on the
    main thread while it is open, and every later test in the process that calls
    ``asyncio.run`` would fail ("cannot be called from a running event loop"). The page
    tests run together (the "browser" xdist group, tests/conftest.py), so it closes as soon
    as the next test is not one of them.
    """

    def __init__(self) -> None:
        self._playwright = None
        self.browser = None

    def get(self) -> object:
        if self.browser is None:
            from playwright import sync_api

            assert CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            self._playwright = sync_api.sync_playwright().start()
            self.browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
        return self.browser

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
            self._playwright.stop()
        self._playwright = self.browser = None


_CHROMIUM = _Chromium()


@pytest.fixture
def browser() -> object:
    """The headless Chromium of the page tests; each test opens its own context in it."""
    return _CHROMIUM.get()


@pytest.hookimpl(trylast=True)  # after the test's own fixtures (its page) are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Close Chromium after the last test that uses it (see :class:`_Chromium`)."""
    if nextitem is None or "browser" not in getattr(nextitem, "fixturenames", ()):
        _CHROMIUM.close()


@pytest.fixture
def page(browser, stack, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page on the service that fails the test if it fetches anything elsewhere."""
    url, _ = stack
    origin = urlsplit(url).netloc
    context, page = offline_page(browser, url, LAPTOP)
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
    # Whatever the Content-Security-Policy blocked (Chromium reports each on the console).
    blocked: list[str] = []
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.set_default_timeout(30_000)
    yield page
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-end.png", full_page=True)
    context.close()
    assert foreign == [], f"the page fetched outside {origin}: {foreign}"
    assert page_errors == [], page_errors
    assert blocked == [], blocked
