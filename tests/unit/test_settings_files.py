"""`<NAME>_FILE` variables (Docker secrets) and the one-line start-up check of the device."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from service.settings import ServiceSettings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]


def test_api_keys_from_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "api_keys"
    secret.write_text("first-key-123\n\n  second-key-456  \n")
    monkeypatch.delenv("STYLIZE_API_KEYS", raising=False)
    monkeypatch.setenv("STYLIZE_API_KEYS_FILE", str(secret))
    keys = [k.get_secret_value() for k in ServiceSettings().api_keys]
    assert keys == ["first-key-123", "second-key-456"]


def test_worker_settings_read_files_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "redis_url"
    secret.write_text("redis://:s3cret@redis:6379/2\n")
    monkeypatch.delenv("STYLIZE_REDIS_URL", raising=False)
    monkeypatch.setenv("STYLIZE_REDIS_URL_FILE", str(secret))
    assert WorkerSettings().redis_url == "redis://:s3cret@redis:6379/2"


@pytest.mark.parametrize(
    ("content", "both", "message"),
    [
        (None, False, "No such file"),
        ("\n \n", False, "is empty"),
        ("some-key-123", True, "not both"),
    ],
)
def test_bad_secret_files_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, both: bool, message: str
) -> None:
    secret = tmp_path / "api_keys"
    if content is not None:
        secret.write_text(content)
    monkeypatch.setenv("STYLIZE_API_KEYS_FILE", str(secret))
    if both:
        monkeypatch.setenv("STYLIZE_API_KEYS", "other-key-789")
    else:
        monkeypatch.delenv("STYLIZE_API_KEYS", raising=False)
    with pytest.raises((ValueError, ValidationError), match=message):
        ServiceSettings()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a host without a usable GPU")
@pytest.mark.parametrize("module", ["service", "worker"])
def test_cuda_without_a_gpu_is_one_line_and_exit_78(module: str, tmp_path: Path) -> None:
    env = {**os.environ, "STYLIZE_DEVICE": "cuda", "STYLIZE_CONTENT_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 78  # EX_CONFIG: Compose restarts it with back-off
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "STYLIZE_DEVICE=cuda" in lines[0] and "NVIDIA driver" in lines[0]
    assert f"CUDA {torch.version.cuda}" in lines[0] or "CPU-only" in lines[0]
