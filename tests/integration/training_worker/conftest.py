"""Fixtures for the training-worker tests (helpers live in ``tests/worker_harness.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import worker_harness
from worker_harness import WorkerEnv


@pytest.fixture
def worker_env(tmp_path: Path, redis_url: str, content_dir: Path) -> Iterator[WorkerEnv]:
    with worker_harness.worker_env(tmp_path, redis_url, content_dir) as setup:
        yield setup
