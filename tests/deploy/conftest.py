"""The deployment test runs only when asked (`make test-deploy`): it builds a 6 GB image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("STYLIZE_DEPLOY_TEST") == "1":
        return
    skip = pytest.mark.skip(reason="builds and runs the Docker stack: `make test-deploy`")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)
