"""What the model store contract tests (``test_model_store_*.py``) share: tiny image
bytes, a style in training, and a helper running a function in a spawned process.

The ``store`` fixture (one store per test, per backend) is in ``conftest.py``; the
functions the spawned processes run are in ``store_workers.py``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable

import pytest

from model_store import ModelStore, Progress, Status

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 32
#: Concurrency and crash tests use real processes, never threads.
SPAWN = multiprocessing.get_context("spawn")


def training_style(store: ModelStore, **kwargs: object) -> str:
    """Create a style and start its training (at step 0 of 100); return its id."""
    rec = store.create(PNG, name="Mosaic", params={"iterations": 100}, **kwargs)  # type: ignore[arg-type]
    store.update(rec.id, status=Status.TRAINING, progress=Progress(0, 100))
    return rec.id


def run_in_process(target: Callable[..., object], *args: object, timeout: float = 60) -> int:
    """Run ``target(*args)`` in a spawned process; return its exit code (fail on a hang)."""
    proc = SPAWN.Process(target=target, args=args)
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"{target} did not finish in {timeout}s")
    assert proc.exitcode is not None
    return proc.exitcode
