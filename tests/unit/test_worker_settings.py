"""Worker settings from STYLIZE_* variables, and failure reasons a user can read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from model_store import CorruptRecord
from stylenet import ContentImagesError, ImageError, InvalidParams, TrainParams, WeightsNotFound
from worker.errors import Interrupted, TrainingFailed, describe_failure
from worker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("STYLIZE_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = WorkerSettings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.training_queue == "training"
    assert settings.device == "auto"
    # The relative default store URL becomes an absolute one open_store accepts.
    assert settings.model_store == (tmp_path / "data" / "models").resolve().as_uri()
    assert settings.content_dir == (tmp_path / "data" / "content").resolve()
    assert settings.progress_interval_s == 2.0


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STYLIZE_REDIS_URL", "redis://redis:6379/3")
    monkeypatch.setenv("STYLIZE_MODEL_STORE", "s3://bucket/prefix")
    monkeypatch.setenv("STYLIZE_CONTENT_DIR", str(tmp_path))
    monkeypatch.setenv("STYLIZE_DEVICE", "CUDA:1")
    monkeypatch.setenv("STYLIZE_TRAINING_QUEUE", "training-gpu")
    monkeypatch.setenv("STYLIZE_CACHE_DIR", str(tmp_path / "cache"))
    settings = WorkerSettings()
    assert settings.redis_url == "redis://redis:6379/3"
    assert settings.model_store == "s3://bucket/prefix"
    assert settings.content_dir == tmp_path.resolve()
    assert settings.device == "cuda:1"
    assert settings.training_queue == "training-gpu"
    assert settings.loss_cache_dir() == (tmp_path / "cache").resolve()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STYLIZE_DEVICE", "gpu"),
        ("STYLIZE_DEVICE", "cuda:x"),
        ("STYLIZE_REDIS_URL", "http://localhost"),
        ("STYLIZE_MODEL_STORE", "ftp://host/models"),
        ("STYLIZE_MODEL_STORE", "s3://"),
        ("STYLIZE_PROGRESS_INTERVAL_S", "0"),
        ("STYLIZE_CHECKPOINT_EVERY", "0"),
        ("STYLIZE_TRAINING_QUEUE", "bad queue"),
        ("STYLIZE_LOG_LEVEL", "loud"),
    ],
)
def test_invalid_settings_fail_fast(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("STYLIZE_").lower()):
        WorkerSettings()


def test_worker_refuses_to_start_on_bad_settings(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "STYLIZE_DEVICE": "tpu"}
    done = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "device" in done.stderr
    env = {**env, "STYLIZE_DEVICE": "cpu", "STYLIZE_CONTENT_DIR": str(tmp_path / "missing")}
    done = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "STYLIZE_CONTENT_DIR" in done.stderr


@pytest.mark.parametrize(
    ("exc", "starts", "retryable"),
    [
        (InvalidParams("batch_size", "must be within 1..64"), "invalid training parameters", False),
        (ImageError("<_io.BytesIO object at 0x7f00>: cannot decode"), "the style image", False),
        (ContentImagesError("no usable content images"), "no content images", False),
        (WeightsNotFound("run stylize lossnet fetch"), "the worker is missing the loss", False),
        (CorruptRecord("abc", "bad"), "the stored style is damaged", False),
        (torch.cuda.OutOfMemoryError("CUDA out of memory"), "out of memory on cuda:0", False),
        (MemoryError(), "out of memory on cuda:0", False),
        (TrainingFailed("nope"), "nope", False),
        (Interrupted("the worker was shut down", consumes_retry=False), "the worker was", True),
        (ConnectionError("redis went away"), "training failed unexpectedly", True),
    ],
)
def test_failure_reasons(exc: BaseException, starts: str, retryable: bool) -> None:
    reason, again = describe_failure(exc, "cuda:0")
    assert reason.startswith(starts) and again is retryable
    assert "BytesIO" not in reason


def test_out_of_memory_reason_says_what_to_change() -> None:
    reason, _ = describe_failure(torch.cuda.OutOfMemoryError("x"), "cuda:0")
    assert "image_size" in reason and "batch_size" in reason


def test_service_side_validation_rejects_bad_params() -> None:
    # What the service runs before enqueueing (and the worker again before training).
    for bad in ({"image_size": 16}, {"iterations": 0}, {"arch": "unet"}, {"lr": -1}):
        with pytest.raises(InvalidParams):
            TrainParams.from_dict(bad)


def test_job_timeout_is_retried() -> None:
    from rq.timeouts import JobTimeoutException

    reason, again = describe_failure(JobTimeoutException("Task exceeded maximum timeout value"))
    assert again and reason.startswith("training took longer than the job timeout")
