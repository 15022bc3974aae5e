"""Settings of the training worker process, from ``STYLIZE_*`` environment variables.

Names shared with the service mean the same thing (see ``docs/ARCHITECTURE.md``). Values
are checked when the settings are built, so a misconfigured worker refuses to start
instead of failing every job. Nothing here touches CUDA: ``device="auto"`` is resolved
in the work horse (:func:`worker.device.resolve_device`), after the fork.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from stylenet.settings_files import FileVariablesSettings

_DEVICE_RE = re.compile(r"auto|cpu|cuda(?::\d+)?")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_QUEUE_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


class WorkerSettings(FileVariablesSettings):
    """Configuration of ``python -m worker`` and of the jobs it runs.

    Attributes:
        redis_url: Redis holding the RQ queues (``STYLIZE_REDIS_URL``).
        model_store: model store URL; a relative ``file://`` path is made absolute.
        content_dir: folder of content photos to train on (absolute after validation).
        min_content_photos: a training is refused (``failed``, with the reason) when
            ``content_dir`` holds fewer photos (``STYLIZE_MIN_CONTENT_PHOTOS``; 0 disables).
        cache_dir: loss-network weight cache (default: ``stylenet.lossnet.default_cache_dir``).
        device: ``auto`` (CUDA when available, decided in the work horse), ``cpu``,
            ``cuda`` or ``cuda:N``. Run one worker per GPU: one job at a time each.
        training_queue: the RQ queue to listen on (``STYLIZE_TRAINING_QUEUE``).
        videos_queue: the clip jobs' queue (``POST /videos``), served by the same worker
            before its training queue (``STYLIZE_VIDEOS_QUEUE``, as the API's).
        progress_interval_s: minimum seconds between progress writes.
        preview_every: iterations between preview stylizations (0: only the final one).
        checkpoint_every: when set, overrides the job's ``checkpoint_every`` (a field that
            does not change the result, only how much a resumed job repeats).
        lock_ttl_s: lifetime of the per-style training lock; refreshed by the running job.
        maintenance_interval_s: how often RQ's maintenance runs (it requeues or fails the
            jobs of workers that died).
        keep_versions: published versions kept per style (newest); older ones leave the
            manifest at the next publish and their weights go at the next store GC.
        store_gc_interval_s: seconds between model-store garbage collections in the
            worker's maintenance (files no manifest references: replaced previews,
            dropped versions, crashed publishes); 0 disables.
        reconcile_interval_s: seconds between reconciler passes (:mod:`worker.reconcile`),
            which repair ``queued``/``training`` styles no job or lease stands behind;
            one pass also runs when the worker starts. 0 disables.
        reconcile_grace_s: a record changed this recently is left alone (the API saves a
            style, then enqueues its job; a job settles its style, then RQ records it).
        reconcile_max_repairs: re-enqueues of one run after its job ended without
            settling the style; then the style is marked ``failed`` with the reason.
        train_job_timeout_s: RQ ``job_timeout`` of the jobs the reconciler enqueues (the
            same setting as the service's, which enqueues the others).
        redis_retry_max_s: longest wait between attempts to reach Redis again when it
            is down (the wait doubles from 1 s up to this).
        worker_name: RQ worker name (default: RQ's random one).
        cpu_dtype: training compute dtype on CPU: ``float32``, ``bfloat16`` (autocast;
            Grams and losses stay float32), or ``auto`` (bfloat16 where the CPU has
            AVX512-BF16 or AMX, where it pays; emulated bf16 is slower). CUDA trains
            under bf16 autocast.
        calibrate: measure the device's training speed at start (a child process, a
            few seconds) and publish it for the API's ``estimated_seconds``.
        calibration_shapes: ``SIZExBATCH`` steps the calibration times (comma-separated).
        score: measure each published version's quality score (:mod:`stylenet.score`,
            after the publish: the style serves meanwhile); off, versions carry none.
        calibration_max_age_s: a published speed younger than this is kept (it is
            also refined after every run).
        log_level: logging level of the worker process.
        demo_styles_dir: the bundled demo styles (``STYLIZE_DEMO_STYLES_DIR``, as the
            API's): a record the API's install will finish (no version, no owner, the
            bundled style image) is never trained by the reconciler. Unset: only
            records marked ``bundled`` are recognised.
    """

    model_config = SettingsConfigDict(env_prefix="STYLIZE_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    model_store: str = "file://./data/models"
    content_dir: Path = Path("./data/content")
    min_content_photos: int = Field(100, ge=0)
    cache_dir: Path | None = None
    device: str = "auto"
    training_queue: str = "training"
    videos_queue: str = "videos"
    progress_interval_s: float = Field(2.0, gt=0, le=300)
    preview_every: int = Field(200, ge=0)
    checkpoint_every: int | None = Field(None, ge=1)
    lock_ttl_s: float = Field(60.0, ge=5, le=3600)
    maintenance_interval_s: int = Field(60, ge=1)
    keep_versions: int = Field(5, ge=1)
    store_gc_interval_s: float = Field(3600.0, ge=0)
    reconcile_interval_s: float = Field(30.0, ge=0)
    reconcile_grace_s: float = Field(15.0, ge=0)
    reconcile_max_repairs: int = Field(2, ge=0)
    train_job_timeout_s: int = Field(6 * 3600, ge=1)
    redis_retry_max_s: float = Field(30.0, ge=1)
    worker_name: str | None = None
    log_level: str = "INFO"
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    calibrate: bool = True
    score: bool = True
    calibration_shapes: str = "32x1,32x4,64x4,128x4,256x4"
    calibration_max_age_s: float = Field(7 * 24 * 3600.0, ge=0)
    demo_styles_dir: Path | None = None

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in _REDIS_SCHEMES:
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {value!r}")
        return value

    @field_validator("model_store")
    @classmethod
    def _absolute_store_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "s3":
            if not parts.netloc:
                raise ValueError("s3 URL needs a bucket: s3://bucket[/prefix]")
            return value
        if parts.scheme not in ("", "file"):
            raise ValueError(f"unknown scheme {parts.scheme!r}; use file:// or s3://")
        # ``file://./data/models`` parses with netloc ".": treat it as a relative path.
        raw = parts.path if parts.netloc in ("", "localhost") else parts.netloc + parts.path
        if not raw:
            raise ValueError("file store URL names no directory")
        return Path(unquote(raw)).expanduser().resolve().as_uri()

    @field_validator("content_dir")
    @classmethod
    def _absolute_content_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("cache_dir")
    @classmethod
    def _absolute_cache_dir(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE_RE.fullmatch(value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("training_queue", "videos_queue")
    @classmethod
    def _check_queue(cls, value: str) -> str:
        if not _QUEUE_RE.fullmatch(value):
            raise ValueError(f"invalid queue name {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {value!r}")
        return value

    @field_validator("calibration_shapes")
    @classmethod
    def _check_shapes(cls, value: str) -> str:
        if not re.fullmatch(r"\d+x\d+(,\d+x\d+)*", value.replace(" ", "")):
            raise ValueError(f"must be SIZExBATCH pairs like 64x4,256x4, got {value!r}")
        return value.replace(" ", "")

    def shapes(self) -> tuple[tuple[int, int], ...]:
        """Return the calibration's ``(image size, batch size)`` pairs."""
        pairs = (item.split("x") for item in self.calibration_shapes.split(","))
        return tuple((int(size), int(batch)) for size, batch in pairs)

    def loss_cache_dir(self) -> Path:
        """Return the loss-network cache directory (the setting, or stylenet's default)."""
        if self.cache_dir is not None:
            return self.cache_dir
        from stylenet.lossnet import default_cache_dir

        return default_cache_dir()


def load_settings() -> WorkerSettings:
    """Build the settings from the environment (raises ``ValidationError`` when invalid)."""
    return WorkerSettings()
