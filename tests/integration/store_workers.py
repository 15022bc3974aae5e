"""Functions run in separate (spawned) processes by the model store contract tests.

They live outside the test module so a spawned child imports only this small module.
Each reports through its exit code: 0 for the expected outcome.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from safetensors.numpy import save

from model_store import InvalidTransition, Progress, StyleNotFound, install_bundled, open_store

CRASHED = 17  # exit code of a simulated crash
STOPPED = 0  # the worker noticed the delete/cancel and stopped
NOT_STOPPED = 3


def make_weights(seed: int) -> bytes:
    """Return a small but real safetensors file, distinct per seed."""
    rng = np.random.default_rng(seed)
    return save(
        {
            "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "conv1.bias": np.full(4, seed, dtype=np.float32),
        },
        metadata={"seed": str(seed)},
    )


def publish_many(
    url: str, scratch: str, style_id: str, worker: int, count: int, barrier: Any
) -> None:
    """Publish ``count`` versions, starting together with the other workers."""
    store = open_store(url, scratch_root=scratch)
    barrier.wait(timeout=60)
    for i in range(count):
        store.publish(
            style_id,
            make_weights(worker * 1000 + i),
            metadata={"worker": worker, "i": i},
            metrics={"loss": float(i)},
        )


def _crash_at(wanted: str) -> Callable[[str], None]:
    def hook(stage: str) -> None:
        if stage == wanted:
            os._exit(CRASHED)  # no cleanup, no finally blocks: like a SIGKILL

    return hook


def crash_during_publish(url: str, scratch: str, style_id: str, seed: int) -> None:
    """Publish, dying after the weights are written and before the manifest is."""
    store = open_store(url, scratch_root=scratch)
    store._fault_hook = _crash_at("weights-written")
    store.publish(style_id, make_weights(seed))
    sys.exit(1)  # not reached


#: A bundled style's files (tiny, but each of the right kind).
BUNDLED_IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x02" * 32
BUNDLED_PREVIEW = b"\xff\xd8\xff\xe0" + b"\x03" * 32
BUNDLED_PARAMS = {"iterations": 3000}


def install_demo(store: Any, style_id: str) -> Any:
    """Install the test's bundled style as the API's start does; return the outcome."""
    return install_bundled(
        store,
        style_id,
        name="Demo",
        style_image=BUNDLED_IMAGE,
        preview=BUNDLED_PREVIEW,
        weights=make_weights(7),
        params=BUNDLED_PARAMS,
        metadata={"demo": True},
        metrics={"loss": 1.0},
    )


def install_together(url: str, scratch: str, style_id: str, barrier: Any, results: Any) -> None:
    """Install the bundled style, starting together with the other processes."""
    store = open_store(url, scratch_root=scratch)
    barrier.wait(timeout=60)
    results.put(str(install_demo(store, style_id)))


def crash_during_install(url: str, scratch: str, style_id: str) -> None:
    """Install the bundled style, dying after its files are written, before its manifest."""
    store = open_store(url, scratch_root=scratch)
    store._fault_hook = _crash_at("bundled-files-written")
    install_demo(store, style_id)
    sys.exit(1)  # not reached


def crash_during_delete(url: str, scratch: str, style_id: str) -> None:
    """Delete a training style, dying right after the cancel is committed."""
    store = open_store(url, scratch_root=scratch)
    store._fault_hook = _crash_at("delete-canceled")
    store.delete(style_id)
    sys.exit(1)  # not reached


def train_until_stopped(url: str, scratch: str, style_id: str, started: Any) -> None:
    """Act like a training job: checkpoint, report progress, stop when told."""
    store = open_store(url, scratch_root=scratch)
    (store.scratch_dir(style_id) / "checkpoint.safetensors").write_bytes(make_weights(0))
    deadline = time.monotonic() + 30
    iteration = 0
    while time.monotonic() < deadline:
        try:
            store.update(style_id, status="training", progress=Progress(iteration, 10_000))
        except StyleNotFound:
            break
        except InvalidTransition as exc:
            if not exc.canceled:
                raise
            break
        started.set()
        iteration += 1
        time.sleep(0.01)
    else:
        sys.exit(NOT_STOPPED)
    # A late publish of a stopped job must be refused, never resurrect the style.
    try:
        store.publish(style_id, make_weights(iteration))
    except (StyleNotFound, InvalidTransition):
        sys.exit(STOPPED)
    sys.exit(NOT_STOPPED)


def register_demos_together(url: str, folder: str, barrier: Any, results: Any) -> None:
    """An API process's start: register the demo styles, together with the others."""
    from pathlib import Path

    from service.demo_styles import register_demo_styles

    store = open_store(url)
    barrier.wait(timeout=120)
    results.put(register_demo_styles(store, Path(folder)))
