"""Fixtures of the browser tests (``test_web_*.py``): one ``stylize up`` stack (Redis,
worker, API) and one Chromium for the whole session, a fresh offline page per test, and
axe-core installed once. Helpers and constants: ``tests/browser_testing.py``.

The tests share the stack's store and its one worker: each gives the styles it creates
names of their own and cancels or deletes the trainings it leaves running, so that the
next test finds the worker free. A test module that wants a stack of its own defines its
own ``stack`` fixture, which takes precedence: test_web_ui_blend.py does, since the
styles it writes straight into the store would be warm starts (``init: auto``) of the
other modules' trainings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser_testing import (
    ARTIFACTS,
    AXE_VERSION,
    CHROMIUM,
    CHROMIUM_ARGS,
    LAPTOP,
    axe_folder,
    axe_script,
    offline_page,
)
from stack_testing import running_stack


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
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``stylize up`` on a free port, shared by the browser tests: its URL and its root."""
    root = tmp_path_factory.mktemp("web-stack")
    with running_stack(root) as (url, _process):
        yield url, root


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium for the session; each test opens its own context in it."""
    from playwright import sync_api

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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
