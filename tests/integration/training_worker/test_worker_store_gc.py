"""The worker's maintenance collects the model store's garbage, at most once an interval."""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image
from worker_harness import WorkerEnv

from worker.process import TrainingWorker
from worker.settings import WorkerSettings

PNG_A = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
PNG_B = b"\x89PNG\r\n\x1a\n" + b"\x01" * 40
PNG_C = b"\x89PNG\r\n\x1a\n" + b"\x02" * 40


def _age_all_files(root: Path, seconds: float) -> None:
    """Make every stored file look ``seconds`` old (gc leaves young unreferenced files)."""
    then = time.time() - seconds
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


def _preview_files(worker_env: WorkerEnv, style_id: str) -> set[str]:
    return {key for key, _ in worker_env.store.backend.list_blobs(style_id) if "preview-" in key}


def test_maintenance_collects_replaced_previews_once_per_interval(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    style_id = worker_env.create_style(style_image, {})
    store = worker_env.store
    store.set_preview(style_id, PNG_A)
    store.set_preview(style_id, PNG_B)  # the first preview is now unreferenced
    assert len(_preview_files(worker_env, style_id)) == 2
    root = Path(store.backend.root)  # type: ignore[attr-defined]
    _age_all_files(root, 7200)

    settings = WorkerSettings(**worker_env.settings_kwargs(), store_gc_interval_s=3600)
    worker = TrainingWorker(settings, connection=worker_env.redis, store=store)
    worker.run_maintenance_tasks()
    assert len(_preview_files(worker_env, style_id)) == 1
    assert store.preview(style_id) == PNG_B  # what the manifest references stays

    store.set_preview(style_id, PNG_C)
    _age_all_files(root, 7200)
    worker.run_maintenance_tasks()  # within the interval: no second collection
    assert len(_preview_files(worker_env, style_id)) == 2
    assert store.preview(style_id) == PNG_C
