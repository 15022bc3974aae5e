"""The service's configuration: one pydantic-settings class, environment prefix ``STYLIZE_``.

Build it with :func:`load_settings` (or ``ServiceSettings(...)`` in tests) and pass it to
:func:`service.app.create_app`. Invalid values fail at start-up, not on the first request.
List settings (``STYLIZE_API_KEYS``, ``STYLIZE_ADMIN_KEYS``, ``STYLIZE_WARM_STYLES``,
``STYLIZE_WARM_SIDES``, ``STYLIZE_ALLOWED_ORIGINS``, ``STYLIZE_ALLOWED_HOSTS``) accept
JSON (``["a","b"]``) or a comma-separated string (``a,b``).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from model_store import is_valid_style_id
from stylenet.flow_blend import DEFAULT_FLOW_WEIGHT
from stylenet.generators import MIN_SIDE
from stylenet.settings_files import FileVariablesSettings
from stylenet.temporal import DEFAULT_TEMPORAL, TemporalMode

_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
MiB = 1024 * 1024


def cpu_count() -> int:
    """Return the CPUs this process may run on (cgroup/affinity aware where possible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _split_list(value: Any) -> Any:
    # Environment strings: JSON list, or comma-separated; blanks are dropped.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ServiceSettings(FileVariablesSettings):
    """Everything the HTTP service can be told, from ``STYLIZE_*`` environment variables.

    Attributes:
        redis_url: Redis holding the RQ training queue.
        model_store: model store URL (``file:///abs``, a path, or ``s3://bucket/prefix``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        host, port: where ``python -m service`` listens.
        max_upload_bytes: largest request body; bigger ones get 413 before being read.
        max_url_bytes: longest request target (path and query); longer: 414.
        max_header_bytes, max_headers: total size (names and values) and number of
            request header fields; more: 431, answered as soon as the limit is crossed.
        header_timeout_s: time a connection gets to deliver a request's line and
            headers (from connect, or from the first byte of a keep-alive request);
            later: 408 and the connection is closed.
        body_idle_timeout_s, body_timeout_s: a request body that stalls this long between
            two reads, or is not complete this long after the handler asks for it: 408.
        keep_alive_s: idle keep-alive connections are closed after this long.
        limit_concurrency: most connections and requests at once; beyond: 503. Per HTTP
            process; ``/healthz`` and ``/readyz`` are answered beyond it too.
        streams_per_client: event streams (``GET /styles/{id}/events``) one key, or one
            client address for requests without a valid key, may hold open at once,
            counted in Redis across every HTTP process and host; beyond: 429
            ``too_many_streams``. 0: no limit.
        max_streams: event streams one HTTP process holds open at once, whoever holds
            them; beyond: 503 ``streams_full``. Below ``limit_concurrency``, so streams
            never take the last connections; 0: half of ``limit_concurrency``.
        allowed_origins: browser origins (``https://host[:port]``) besides the service's
            own that may change state (POST, PUT, PATCH, DELETE) and read answers
            cross-origin (CORS). Other origins get 403 ``cross_site``.
        allowed_hosts: host names the service is reached by (``Host``), besides IP
            addresses and ``localhost`` (always accepted): ``stylize.example.com``,
            ``*.example.com`` for the names under it, ``*`` for any. Other names get
            400 ``host_not_allowed`` (DNS rebinding, :mod:`service.hosts`).
        max_pixels: largest decoded image (width × height), checked before decoding, so
            a decompression bomb is refused from its header.
        max_side_default, max_side_limit: inputs are downscaled so their longer side is
            at most ``max_side`` (default / largest a client may ask for).
        max_batch_size: most images of one (style version, H, W) stacked in one forward.
            Unset: 16 on CUDA, 1 on CPU, where stacking measured slower per image (a
            512² batch of 4 took 28 % longer per image than 4 single forwards on 2 cores).
        batch_timeout_ms: how long the first request of a batch waits for company when
            the device is idle (under load batches fill while the device is busy).
        queue_size: requests waiting for the device; beyond it requests get 429 at once.
        inflight_pixels: decoded pixels (after ``max_side`` scaling) the normal lane of
            one HTTP process holds at once, from the image header to the answer; a
            request that does not fit gets 429 ``pixel_budget`` at once. An image larger
            than the budget is served alone. Default 4 × 2048² (five 2048×1536 photos).
        inflight_bytes: host memory the normal lane of one HTTP process may hold at once
            (:mod:`service.runtime.budget`): each request's body, decode, image and result,
            plus the forward's activations on a CPU (~1 KB per pixel for a width-1 net in
            float32, ~0.5 KB in bfloat16).
            A request that does not fit gets 429 ``memory_budget`` at once; an image whose
            forward alone needs more goes to the large-image lane (tiled, memory bounded
            by ``tile_side``). The process's peak RSS stays near its idle RSS plus this
            plus the large lane's one image. 0: no memory budget.
        request_timeout_s: a stylize request still unanswered this long after arrival
            gets 504 (and is dropped from the queue if it has not run yet).
        deadline_admission: refuse at once (503 ``would_time_out`` with ``Retry-After``) a
            request that the work already admitted to its lane would keep past its
            deadline, priced from the lane's measured seconds per FLOP
            (:mod:`service.runtime.pace`); a request whose forward alone would take
            longer is refused too. False: measure only (requests wait and may get 504).
        pace_calibration_side: the warm-up times one forward of a reference generator at
            this side² on the device (:mod:`service.runtime.calibration`), so time-aware
            admission prices the first requests after a start too; on a CPU (side ≥ 256)
            it also measures the forward's host memory, which prices every forward for
            the memory budget (``inflight_bytes``) when over the default slack. 0: none
            (nothing is refused before a request of the size has run or ``warm_styles``
            warmed; memory priced by the traced estimate alone).
        trim_after_bytes: once the memory budget's last request ends after a burst that
            held at least this many bytes, freed heap memory is returned to the OS
            (glibc ``malloc_trim``, Linux only), so RSS comes down. 0: never.
        cache_max_models, cache_max_bytes: generator cache limits (count, device bytes).
        warm_styles: styles loaded (and run once per ``warm_sides``) before ``/readyz``
            turns ready.
        warm_sides: square sizes the warm-up runs (and, with ``torch_compile``, the
            shapes compiled ahead of time).
        style_cache_ttl_s: how long a style record (its current version) is reused before
            the store is read again.
        api_keys: bearer keys of users; with neither these nor ``admin_keys`` the API is
            open. A user key manages (cancels, retrains, deletes) the styles it created.
        admin_keys: bearer keys that are valid wherever a user key is and also manage
            every style, the demo styles and styles without an owner included.
        stylize_requires_key: whether ``POST /stylize`` needs a key too.
        trainings_per_key: most trainings one key may have queued or running at once
            (counted in Redis across every HTTP process); beyond: 429 ``training_quota``.
            0: no limit. Not applied while the API is open (no keys configured).
        training_budget_s: estimated training seconds one key may start per UTC day
            (charged at admission from the workers' measured speed); 0: no budget.
        stylize_rate_per_s, stylize_burst: token bucket of ``POST /stylize`` per key
            (requests without a valid key: per client address), held in Redis; beyond:
            429 ``rate_limited``. Rate 0: no limit; burst 0: ``max(1, rate)``.
        training_queue: RQ queue the training jobs go to.
        train_job_timeout_s: RQ ``job_timeout`` of a training job.
        torch_compile: compile generators (for the ``warm_sides`` shapes) with
            ``torch.compile``; other shapes run eager.
        mixed_batches: requests for different styles that share every convolution
            (adapted from one base, only their instance-norm γ/β trained) share one
            forward pass with per-sample γ/β, and the cache holds those convolutions
            once (:mod:`service.runtime.mixed`); false: one style per batch.
        cpu_dtype: compute dtype of generators on CPU: ``float32``, ``bfloat16``, or
            ``auto`` (bfloat16 when the CPU has bf16 instructions, AVX512-BF16 or AMX:
            1.5× faster at 512² on such a CPU, mean change 0.4–0.6 of 255). CUDA always
            runs bf16 autocast.
        torch_threads: intra-op threads of the device executor (0: ``OMP_NUM_THREADS``
            where set, else one per CPU, shared out among ``workers``).
        backend: what runs the generators on a CPU device: ``torch`` (``cpu_dtype``),
            ``onnxruntime`` (the style's ONNX export on ONNX Runtime, float32) or
            ``auto`` (both timed at start at 256² on a generator of the default
            structure, the faster kept; ``/readyz`` says which and why). Images over
            ``tile_pixels`` stay on torch's exact tiled path; CUDA always runs torch.
        workers: HTTP processes ``python -m service`` runs on one port, each with its own
            runtime and generator cache (0: :meth:`effective_workers` decides).
        process_dir: set by ``python -m service`` for the processes it starts (shared
            readiness and metrics, :mod:`service.processes`); not a user setting.
        codec_threads: threads decoding and encoding images, beside the device.
        gpu_codecs: JPEG through torchvision.io on the service's device
            (:mod:`service.codecs`): requests that need no resizing are decoded by nvJPEG
            straight onto the GPU, and JPEG answers are encoded there, so the host handles
            only compressed bytes; PNG, WebP, resized and unusual JPEGs stay with PIL.
            ``auto``: on when the device is CUDA; ``off``: PIL only, exactly the codecs
            of before; ``on``: also on a CPU device (torchvision's libjpeg-turbo; for
            tests and comparisons). Start-up fails if ``on`` cannot encode and decode a
            probe image; ``auto`` then logs a warning and uses PIL. The CPU ms saved per
            image need a GPU to measure (``bench/gpu_session.sh``, step ``gpu-codecs``).
        tile_pixels: images over this many pixels are stylized by exact tiled inference
            (:mod:`stylenet.tiled`, whole-image statistics, memory bounded by the tile) in
            a lane of their own, one at a time, beside the batcher.
        tile_side: the tile side of that lane, in pixels.
        large_queue_size: large images waiting or running; beyond, 429 at once.
        large_request_timeout_s: ``request_timeout_s`` for large images (a 8192×5464
            photo takes minutes on a CPU).
        events_poll_s: how often ``/styles/{id}/events`` reads the style record.
        events_max_s: longest life of one event stream (clients reconnect).
        demo_styles_dir: folder of bundled demo styles (``demo_styles/``) registered in
            the store at start when missing; unset registers none.
        clip_max_seconds, clip_max_frames: longest clip ``POST /stylize`` takes (its
            declared duration and frame count, and again as frames are decoded); beyond,
            413 ``clip_too_large`` naming the limit (docs/VIDEO.md).
        clip_max_frame_pixels: largest frame of a clip as stored (width × height, from
            the header, before any frame is decoded: a GIF's screen too).
        clip_max_total_pixels: pixels stylized over a whole clip, after ``max_side``.
        clip_max_side: a clip's frames are downscaled to this longer side by default
            (``max_side`` may ask for less, never for more).
        clip_request_timeout_s: ``request_timeout_s`` for a clip.
        clip_batch_frames: frames a clip hands the batcher at once.
        clip_temporal: default temporal mode (``per_frame``, ``shared`` or ``flow``;
            flow by the warping error of docs/VIDEO.md's flicker table; its flow runs
            on the CPU, so a GPU host may want per_frame).
        clip_stats_frames: frames the shared statistics are taken over.
        clip_flow_weight: ``flow``'s blend weight: how much of the previous output,
            warped by the motion, a well-matched pixel keeps (0 is per_frame).
        videos_queue: RQ queue of the clip jobs of ``POST /videos`` (the training worker
            serves it before its training queue; ``STYLIZE_VIDEOS_QUEUE``, as the worker's).
        video_max_seconds, video_max_frames, video_max_total_pixels: what a clip job may
            cost (checked on the header at upload, 413 ``clip_too_large``, and again by
            the worker while decoding); frame size and ``max_side`` are the clip ones.
        video_ttl_s: how long a clip job's state and files are kept after its last
            change (a result: after it is done); then they are gone (404).
        video_max_waiting: clip jobs stored and not yet expired, at most; beyond, 429
            ``videos_full`` (a bound on the scratch disk the uploads and results take).
        video_job_timeout_s: RQ ``job_timeout`` of a clip job.
    """

    model_config = SettingsConfigDict(env_prefix="STYLIZE_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    model_store: str = "file://./data/models"
    device: str = "auto"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_upload_bytes: int = Field(64 * MiB, ge=1024)
    max_url_bytes: int = Field(8 * 1024, ge=256, le=1024 * 1024)
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=16 * MiB)
    max_headers: int = Field(100, ge=8, le=10_000)
    header_timeout_s: float = Field(5.0, gt=0, le=600)
    body_idle_timeout_s: float = Field(5.0, gt=0, le=600)
    body_timeout_s: float = Field(120.0, gt=0, le=3600)
    keep_alive_s: float = Field(15.0, gt=0, le=3600)
    limit_concurrency: int = Field(1024, ge=1, le=1_000_000)
    streams_per_client: int = Field(16, ge=0, le=1_000_000)
    max_streams: int = Field(0, ge=0, le=1_000_000)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_pixels: int = Field(8192 * 8192, ge=MIN_SIDE * MIN_SIDE)
    max_side_default: int = Field(1024, ge=MIN_SIDE)
    max_side_limit: int = Field(8192, ge=MIN_SIDE)
    max_batch_size: int | None = Field(None, ge=1, le=256)
    batch_timeout_ms: float = Field(2.0, ge=0, le=10_000)
    queue_size: int = Field(32, ge=1, le=100_000)
    inflight_pixels: int = Field(4 * 2048 * 2048, ge=MIN_SIDE * MIN_SIDE)
    inflight_bytes: int = Field(2048 * MiB, ge=0)
    request_timeout_s: float = Field(30.0, gt=0, le=3600)
    deadline_admission: bool = True
    pace_calibration_side: int = Field(512, ge=0, le=4096)
    trim_after_bytes: int = Field(256 * MiB, ge=0)
    cache_max_models: int = Field(8, ge=1)
    cache_max_bytes: int = Field(2048 * MiB, ge=1)
    warm_styles: Annotated[list[str], NoDecode] = Field(default_factory=list)
    warm_sides: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [256])
    style_cache_ttl_s: float = Field(2.0, ge=0)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    stylize_requires_key: bool = False
    trainings_per_key: int = Field(2, ge=0, le=10_000)
    training_budget_s: float = Field(0.0, ge=0)
    stylize_rate_per_s: float = Field(0.0, ge=0, le=100_000)
    stylize_burst: int = Field(0, ge=0, le=1_000_000)
    training_queue: str = Field("training", min_length=1)
    train_job_timeout_s: int = Field(6 * 3600, ge=1)
    torch_compile: bool = False
    mixed_batches: bool = True
    cpu_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    torch_threads: int = Field(0, ge=0, le=1024)
    backend: Literal["torch", "onnxruntime", "auto"] = "torch"
    workers: int = Field(0, ge=0, le=64)
    process_dir: Path | None = None
    codec_threads: int = Field(2, ge=1, le=64)
    gpu_codecs: Literal["auto", "on", "off"] = "auto"
    tile_pixels: int = Field(2048 * 2048, ge=MIN_SIDE * MIN_SIDE)
    tile_side: int = Field(512, ge=MIN_SIDE, le=8192)
    large_queue_size: int = Field(2, ge=1, le=1000)
    large_request_timeout_s: float = Field(900.0, gt=0, le=24 * 3600)
    events_poll_s: float = Field(0.5, gt=0, le=60)
    events_max_s: float = Field(600.0, gt=0)
    demo_styles_dir: Path | None = None
    clip_max_seconds: float = Field(30.0, gt=0, le=3600)
    clip_max_frames: int = Field(900, ge=1, le=1_000_000)
    clip_max_frame_pixels: int = Field(4096 * 4096, ge=MIN_SIDE * MIN_SIDE)
    clip_max_total_pixels: int = Field(300 * 1280 * 720, ge=MIN_SIDE * MIN_SIDE)
    clip_max_side: int = Field(1280, ge=MIN_SIDE, le=8192)
    clip_request_timeout_s: float = Field(900.0, gt=0, le=24 * 3600)
    clip_batch_frames: int = Field(4, ge=1, le=64)
    clip_temporal: TemporalMode = DEFAULT_TEMPORAL
    clip_stats_frames: int = Field(8, ge=1, le=64)
    clip_flow_weight: float = Field(DEFAULT_FLOW_WEIGHT, ge=0.0, lt=1.0)
    videos_queue: str = Field("videos", min_length=1, max_length=100)
    video_max_seconds: float = Field(300.0, gt=0, le=24 * 3600)
    video_max_frames: int = Field(9000, ge=1, le=10_000_000)
    video_max_total_pixels: int = Field(9000 * 1280 * 720, ge=MIN_SIDE * MIN_SIDE)
    video_ttl_s: int = Field(24 * 3600, ge=60, le=30 * 24 * 3600)
    video_max_waiting: int = Field(64, ge=1, le=100_000)
    video_job_timeout_s: int = Field(6 * 3600, ge=1)

    @field_validator(
        "warm_styles",
        "warm_sides",
        "api_keys",
        "admin_keys",
        "allowed_origins",
        "allowed_hosts",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("warm_styles")
    @classmethod
    def _style_ids(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not is_valid_style_id(s)]
        if bad:
            raise ValueError(f"not valid style ids: {bad}")
        return value

    @field_validator("warm_sides")
    @classmethod
    def _sides(cls, value: list[int]) -> list[int]:
        if any(side < MIN_SIDE for side in value):
            raise ValueError(f"warm sides must be ≥ {MIN_SIDE}")
        return value

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(k.get_secret_value()) < 8 for k in value):
            raise ValueError("API keys must be at least 8 characters")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # Compared with the browser's Origin header, which is always in this form.
        return [normalize_origin(origin) for origin in value]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [normalize_host_pattern(host) for host in value]

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE_RE.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("model_store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        # ``file://./rel`` is how people write a relative path; model_store wants
        # ``file:///abs`` (or a bare path), so resolve it here, once.
        if value.startswith("file://./") or value.startswith("file://../"):
            return Path(value[len("file://") :]).absolute().as_uri()
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSettings:
        if self.max_side_default > self.max_side_limit:
            raise ValueError("max_side_default must not exceed max_side_limit")
        if self.max_side_limit**2 > self.max_pixels:
            # A square image at the largest side must still decode.
            raise ValueError("max_side_limit² must not exceed max_pixels")
        if self.stylize_requires_key and not self.auth_enabled:
            raise ValueError("stylize_requires_key needs api_keys or admin_keys")
        if self.max_streams >= self.limit_concurrency:
            # Streams would take the connections every other request needs.
            raise ValueError("max_streams must be below limit_concurrency")
        return self

    @property
    def auth_enabled(self) -> bool:
        """Whether API keys (user or admin) are configured."""
        return bool(self.api_keys or self.admin_keys)

    @property
    def effective_max_streams(self) -> int:
        """Return the event streams one HTTP process holds at most (``max_streams`` or half)."""
        return self.max_streams or max(1, self.limit_concurrency // 2)

    @property
    def effective_stylize_burst(self) -> int:
        """Return the token bucket's size of ``POST /stylize`` (``stylize_burst`` or the rate)."""
        return self.stylize_burst or max(1, math.ceil(self.stylize_rate_per_s))

    def effective_max_batch_size(self, device_type: str) -> int:
        """Return the batch limit for a device type (``cpu`` or ``cuda``)."""
        if self.max_batch_size is not None:
            return self.max_batch_size
        return 16 if device_type == "cuda" else 1

    def uses_gpu_codecs(self, device_type: str) -> bool:
        """Whether JPEG goes through torchvision.io on a device of this type (``gpu_codecs``)."""
        return self.gpu_codecs == "on" or (self.gpu_codecs == "auto" and device_type == "cuda")

    def effective_workers(self, device_type: str) -> int:
        """Return how many HTTP processes to run on a device type (``cpu`` or ``cuda``).

        On CUDA one Python process cannot keep a GPU busy (decode, encode and HTTP are CPU
        work): one per two cores, at most 8. On a CPU the processes would share the cores
        the generator already uses with all its threads: one.
        """
        if self.workers:
            return self.workers
        return max(1, min(8, cpu_count() // 2)) if device_type == "cuda" else 1

    def effective_torch_threads(self) -> int:
        """Return the intra-op thread count the device executor uses (its share of the CPUs)."""
        if self.torch_threads:
            return self.torch_threads
        # The standard knob of every OpenMP program, set by container platforms and by a
        # host that runs other work beside the service (the test suite's processes too).
        omp = os.environ.get("OMP_NUM_THREADS", "").strip()
        if omp.isdigit() and int(omp) > 0:
            return int(omp)
        return max(1, cpu_count() // max(1, self.workers))


_ORIGIN_RE = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def normalize_origin(origin: str) -> str:
    """Return ``origin`` as browsers send it in ``Origin`` (lower case, no default port).

    Raises:
        ValueError: not ``http(s)://host[:port]`` (no path, no wildcard, not ``null``).
    """
    match = _ORIGIN_RE.fullmatch(origin.strip().lower().rstrip("/"))
    if match is None:
        raise ValueError(
            f"not an origin: {origin!r}; write scheme://host[:port], e.g. https://app.example.com"
        )
    scheme, host, port = match.groups()
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")


def normalize_host_pattern(pattern: str) -> str:
    """Return an ``allowed_hosts`` entry as :mod:`service.hosts` compares it (lower case).

    Raises:
        ValueError: a URL, a port, a path or a wildcard other than a leading ``*.``.
    """
    value = pattern.strip().lower()
    if value == "*":
        return value
    wildcard = "*." if value.startswith("*.") else ""
    body = value.removeprefix(wildcard).rstrip(".")
    if not body or any(c in body for c in "/:*@ ["):
        raise ValueError(
            f"not a host name: {pattern!r}; write a name (stylize.example.com), "
            "*.example.com for the names under it, or * for any host"
        )
    return wildcard + body


def load_settings(**overrides: Any) -> ServiceSettings:
    """Read settings from the environment; keyword arguments override it (tests, CLI)."""
    return ServiceSettings(**overrides)
