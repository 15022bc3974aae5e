"""The worker refuses to train on fewer content photos than STYLIZE_MIN_CONTENT_PHOTOS."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from worker_harness import TINY, WorkerEnv, wait_for

from stylenet.data import find_images
from worker.errors import TooFewContentPhotos, describe_failure
from worker.settings import WorkerSettings


def test_too_few_photos_fail_readably_without_retry(
    worker_env: WorkerEnv, style_image: Image.Image, content_dir: Path
) -> None:
    found = len(find_images(content_dir))
    params = {**TINY, "iterations": 4}
    style_id = worker_env.create_style(style_image, params)
    job = worker_env.enqueue(style_id, params)
    worker_env.start_worker("--burst", STYLIZE_MIN_CONTENT_PHOTOS="50")
    rec = worker_env.wait_status(style_id, "failed")
    assert rec.error == (
        f"only {found} content photos in {content_dir.resolve()} "
        "(need at least 50; run `stylize content install`)"
    ), rec.error
    wait_for(lambda: job.get_status(refresh=True) == "failed", 10, "the job to fail")
    job.refresh()
    assert not job.retries_left and not job.number_of_retries  # final: never retried


def test_enough_photos_train_and_record_the_count(
    worker_env: WorkerEnv, style_image: Image.Image, content_dir: Path
) -> None:
    found = len(find_images(content_dir))
    params = {**TINY, "iterations": 2}
    style_id = worker_env.create_style(style_image, params)
    worker_env.enqueue(style_id, params)
    worker_env.start_worker("--burst", STYLIZE_MIN_CONTENT_PHOTOS=str(found))
    rec = worker_env.wait_status(style_id, "ready", "failed")
    assert rec.error is None
    # What GET /styles/{id} shows as "metrics": the photos trained on (minus held out).
    assert rec.metrics["content_images"] == found - TINY["holdout"]


def test_minimum_setting_and_reason() -> None:
    assert WorkerSettings().min_content_photos == 100
    reason, retryable = describe_failure(TooFewContentPhotos(4, "/x", 100))
    assert (
        reason == "only 4 content photos in /x (need at least 100; run `stylize content install`)"
    )
    assert not retryable
