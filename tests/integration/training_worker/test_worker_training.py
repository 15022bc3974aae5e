"""Training jobs end to end: enqueue → ``python -m worker`` trains → style ``ready``."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from rq.job import Job
from rq.serializers import JSONSerializer
from worker_harness import TINY, WorkerEnv, wait_for

from model_store import Status, VersionNotFound
from stylenet import TrainParams, load_generator, stylize


def test_trains_publishes_and_reports_progress(
    worker_env: WorkerEnv, style_image: Image.Image, photo: Image.Image
) -> None:
    params = TrainParams.from_dict({**TINY, "iterations": 16}).to_dict()
    style_id = worker_env.create_style(style_image, params)
    job = worker_env.enqueue(style_id, params)
    worker_env.start_worker(STYLIZE_KEEP_VERSIONS="1")

    # Progress is visible while the job runs: in the record and in job.meta.
    seen: list[int] = []
    losses: list[float | None] = []

    def progressed() -> bool:
        rec = worker_env.record(style_id)
        if rec.progress is not None and (not seen or rec.progress.iteration != seen[-1]):
            seen.append(rec.progress.iteration)
            losses.append(rec.progress.loss)
        return rec.status is Status.READY

    wait_for(progressed, 90, "the style to become ready", poll=0.02)
    assert len(seen) >= 2, seen
    assert seen == sorted(seen) and seen[-1] == 16
    assert all(loss is not None and loss > 0 for loss in losses), losses  # live loss curve

    rec = worker_env.record(style_id)
    assert rec.current_version == 1 and rec.error is None
    assert rec.metrics["iterations"] == 16 and rec.metrics["resumed_from"] == 0
    assert rec.metrics["device"] == "cpu" and rec.metrics["images_per_s"] > 0
    assert set(rec.metrics["holdout_loss"]) >= {"content", "style", "total"}
    assert rec.version_info().metadata["dtype"] == "float16"

    # The published weights load and stylize an image to its size.
    generator, info = load_generator(worker_env.store.open_weights(style_id))
    assert info.dtype == "float16" and info.train_params["iterations"] == 16
    out = stylize(photo, generator, max_side=96)
    assert out.size == (96, 96) and out.getextrema() != ((0, 0), (0, 0), (0, 0))

    # A preview of the final generator, and the job's own record of the run.
    preview = Image.open(io.BytesIO(worker_env.store.preview(style_id)))
    assert max(preview.size) <= 256 and preview.mode == "RGB"
    # The style is ready at publish; RQ records the job a moment later.
    wait_for(lambda: job.get_status(refresh=True) == "finished", 10, "the job to finish")
    assert job.return_value() == {"status": "ready", "style_id": style_id, "version": 1}
    progress = job.get_meta()["progress"]
    assert progress["iteration"] == 16 and progress["total"] == 16
    assert {"losses", "images_per_s", "eta_s", "lr", "elapsed_s"} <= set(progress)
    # Checkpoints are gone once the style is ready.
    wait_for(lambda: not worker_env.scratch_files(style_id), 10, "the scratch to be removed")

    # A retrain is a new job under the same id: it trains again (not mistaken for a
    # duplicate run of the first job) while version 1 keeps serving.
    retrain = {**params, "iterations": 6, "seed": 1}
    worker_env.store.update(style_id, status="queued")
    job = worker_env.enqueue(style_id, retrain)
    wait_for(lambda: worker_env.record(style_id).current_version == 2, 60, "version 2")
    rec = worker_env.record(style_id)
    assert rec.status == "ready" and rec.metrics["iterations"] == 6
    assert rec.metrics["resumed_from"] == 0 and rec.metrics["attempt"] == 1
    # STYLIZE_KEEP_VERSIONS=1: version 1 left the manifest (the store's gc removes it).
    assert [v.version for v in rec.versions] == [2]
    with pytest.raises(VersionNotFound):
        worker_env.store.open_weights(style_id, 1)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({**TINY, "image_size": 8}, "invalid training parameters: image_size"),
        ({**TINY, "colour": "blue"}, "invalid training parameters: colour"),
    ],
)
def test_bad_params_fail_without_retry(
    worker_env: WorkerEnv, style_image: Image.Image, params: dict, reason: str
) -> None:
    # The service validates before enqueueing (TrainParams.from_dict); the worker
    # validates again and fails the style for good if bad params slip through.
    with pytest.raises(ValueError, match=reason.split(": ")[1]):
        TrainParams.from_dict(params)
    style_id = worker_env.create_style(style_image, {})
    job = worker_env.enqueue(style_id, params)
    worker_env.start_worker("--burst")
    rec = worker_env.wait_status(style_id, "failed")
    assert rec.error.startswith(reason)
    wait_for(lambda: job.get_status(refresh=True) == "failed", 10, "the job to fail")
    job.refresh()
    assert not job.retries_left and not job.number_of_retries  # final: never retried


def test_corrupt_style_image_fails_readably(worker_env: WorkerEnv) -> None:
    corrupt = b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50
    params = {**TINY, "iterations": 4}
    style_id = worker_env.create_style(corrupt, params)
    worker_env.enqueue(style_id, params)
    worker_env.start_worker("--burst")
    rec = worker_env.wait_status(style_id, "failed")
    assert rec.error.startswith("the style image cannot be decoded"), rec.error
    assert "BytesIO" not in rec.error


def test_no_content_images_fails_readably(
    worker_env: WorkerEnv, style_image: Image.Image, tmp_path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    params = {**TINY, "iterations": 4}
    style_id = worker_env.create_style(style_image, params)
    worker_env.enqueue(style_id, params)
    worker_env.start_worker("--burst", STYLIZE_CONTENT_DIR=str(empty))
    rec = worker_env.wait_status(style_id, "failed")
    assert rec.error.startswith("no content images to train on"), rec.error


def test_a_published_version_is_scored_after_it_serves_and_a_retrain_continues_from_it(
    worker_env: WorkerEnv, style_image: Image.Image
) -> None:
    params = TrainParams.from_dict({**TINY, "iterations": 4, "yardstick_steps": 2}).to_dict()
    style_id = worker_env.create_style(style_image, params)
    worker_env.enqueue(style_id, params)
    worker_env.start_worker(STYLIZE_SCORE="true")

    def scored() -> dict | None:
        rec = worker_env.record(style_id)
        score = rec.metrics.get("score") or {}
        return score if score.get("status") not in (None, "scoring") else None

    wait_for(lambda: worker_env.record(style_id).status is Status.READY, 90, "ready")
    score = wait_for(scored, 120, "the score")
    assert score["status"] == "done", score
    assert score["steps"] == 2 and score["image_size"] == 256 and score["r_mean"] > 0
    # The fixture's photos are no corpus: the score says its photos are unverified.
    assert score["photos"] == "unverified" and score["reference"] is False
    rec = worker_env.record(style_id)
    assert rec.version_info().metrics["score"] == score
    assert rec.metrics["init"]["kind"] in ("scratch", "style")
    # The score ran as a job of its own, queued behind the training (which had finished).
    scoring = Job.fetch(
        f"score-{style_id}-v1", connection=worker_env.redis, serializer=JSONSerializer
    )
    assert scoring.func_name == "worker.scoring.score_style"
    # RQ marks the job finished just after its function returned (the score is already
    # in the record by then): wait for that, don't race it.
    wait_for(lambda: scoring.get_status(refresh=True) == "finished", 30, "the job finished")

    # A retrain continues from the version that serves (init "auto").
    worker_env.store.restart(style_id, params)
    worker_env.enqueue(style_id, params)
    wait_for(lambda: worker_env.record(style_id).current_version == 2, 90, "version 2")
    init = worker_env.record(style_id).metrics["init"]
    assert init["kind"] == "continue" and init["version"] == 1, init
