"""Request options and response documents of the HTTP API (pydantic models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_store import Status, StyleRecord, VersionInfo
from stylenet import TrainParams
from stylenet.blend import MAX_STYLES, SPEC_PATTERN, BlendSpecError, parse_blend
from stylenet.generators import MIN_SIDE

OutputFormat = Literal["png", "jpeg", "webp"]


class StylizeOptions(BaseModel):
    """Options of ``POST /stylize``, from the query string or multipart form fields.

    Every example and default is a valid request (Swagger UI's "Try it out" fills the
    form with them): ``scream`` is a bundled demo style.
    """

    model_config = ConfigDict(extra="forbid")

    style: str = Field(
        max_length=400,
        description="Style id to apply (GET /styles lists them), or a blend of up to "
        f"{MAX_STYLES} styles that share a base, `a:0.7,b:0.3` (weights > 0, normalized to "
        "sum to 1; a weight left out counts 1); see docs/BLENDING.md",
        examples=["scream"],
        json_schema_extra={"pattern": SPEC_PATTERN},
    )
    # No example: a pinned version is an exception (Swagger UI still fills in 1, its
    # sample of an integer >= 1, which every published style has unless pruned).
    version: int | None = Field(None, ge=1, description="Style version (default: current)")
    max_side: int | None = Field(
        None,
        ge=MIN_SIDE,
        description="Downscale so the longer side is at most this many pixels "
        "(default and upper bound: settings max_side_default / max_side_limit)",
        examples=[1024],
    )
    strength: float = Field(1.0, ge=0.0, le=1.0, description="0: the input, 1: full style")
    preserve_color: bool = Field(False, description="Keep the input's colours")
    format: OutputFormat | None = Field(
        None, description="Output format (default: the input's format)"
    )
    quality: int | None = Field(None, ge=1, le=100, description="JPEG/WebP quality", examples=[90])
    progress_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="A name the client makes up (8-64 letters, digits, - or _; a random "
        "UUID) to follow this request at GET /stylize/progress/{progress_id} while it runs",
        examples=["3f2b7c1e-photo-1"],
    )

    @field_validator("style")
    @classmethod
    def _blend_spec(cls, value: str) -> str:
        # One id or a blend: a malformed one is a 422 that says what is wrong (the
        # BlendSpecError's message), not just "does not match the pattern".
        try:
            parse_blend(value)
        except BlendSpecError as exc:
            raise ValueError(exc.reason) from None
        return value


class ErrorDetail(BaseModel):
    """The content of every error response."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable machine-readable code, e.g. style_not_found")
    message: str
    request_id: str | None = None


class ErrorOut(BaseModel):
    """Every non-2xx response: ``{"error": {...}}``."""

    error: ErrorDetail


class ProgressOut(BaseModel):
    """Training progress."""

    iteration: int
    total: int
    fraction: float
    eta_s: float | None = Field(description="Estimated seconds to completion")
    loss: float | None = Field(None, description="Total training loss at this iteration")


class QueueOut(BaseModel):
    """Where a queued style's training stands on the training queue."""

    position: int = Field(
        ge=1,
        description="1 = the next job a free worker takes; counts every job ahead, "
        "quality scores of published styles included",
    )
    starts_in_seconds: float | None = Field(
        description="Estimated seconds until a worker starts the training: the estimates "
        "of the jobs ahead plus the remaining time of the runs under way, spread over "
        "the workers listening (at least one assumed); null without a measured training "
        "speed, or when a job ahead cannot be priced"
    )
    ready_in_seconds: float | None = Field(
        description="Estimated seconds until the style is ready: `starts_in_seconds` plus "
        "its own training estimate (`estimated_seconds`); null when either is unknown"
    )


class VersionOut(BaseModel):
    """A published set of weights."""

    version: int
    sha256: str
    size: int = Field(description="Bytes of the generator file (what is served)")
    stored_bytes: int = Field(
        description="Bytes it takes in the store: `size`, or less for a version stored as "
        "what differs from another style's weights (`storage.depends_on`)"
    )
    created_at: datetime
    metrics: dict[str, Any]


class ParentOut(BaseModel):
    """The stored version whose tensors a version is stored over."""

    style_id: str
    version: int
    sha256: str = Field(description="Its generator file's sha256, checked on every rebuild")


class StorageOut(BaseModel):
    """How the serving version's weights are stored."""

    bytes: int = Field(description="Bytes the serving version takes in the store")
    full_bytes: int = Field(description="Bytes of its generator file, as served")
    depends_on: ParentOut | None = Field(
        None,
        description="Set when only the tensors that differ from this style version are "
        "stored (a style adapted from another, e.g. only its γ/β): reads rebuild the file "
        "from both, and that style cannot be deleted while this one needs it. Null: stored "
        "in full",
    )

    @classmethod
    def of(cls, info: VersionInfo) -> StorageOut:
        """Return how the version ``info`` is stored."""
        parent = None if info.delta is None else ParentOut(**info.delta.parent.to_json())
        return cls(bytes=info.stored_size, full_bytes=info.size, depends_on=parent)


class StyleLinks(BaseModel):
    """Related resources of a style."""

    self: str
    style_image: str
    events: str
    train: str
    cancel: str
    preview: str | None = Field(
        None, description="The style's picture: a preview of the version that serves"
    )
    training_preview: str | None = Field(
        None,
        description="The latest preview of the current (or last unpublished) training run; "
        "it becomes `preview` only when the run publishes",
    )


_RUN_WORDS = {
    Status.QUEUED: "retrain queued",
    Status.TRAINING: "retraining",
    Status.FAILED: "retrain failed",
    Status.CANCELED: "retrain canceled",
}


def state_text(rec: StyleRecord) -> str:
    """Say what a style is to a person: a servable style reads "ready", whatever its run.

    ``status`` is the state of the style's latest training run; a style whose retrain
    was canceled or failed still serves its current version, so it reads
    "ready · v1 (retrain canceled)" rather than "canceled".
    """
    if rec.current_version is None:
        return rec.status.value
    serving = f"ready · v{rec.current_version}"
    run = _RUN_WORDS.get(rec.status)
    return serving if run is None else f"{serving} ({run})"


class StartOut(BaseModel):
    """Where the serving version's weights started: what blending and sharing go by."""

    kind: str = Field(
        description="`base` (a base generator), `style` (another style's weights), "
        "`continue` (its own previous version), `scratch`, or `unrecorded` (trained before "
        "starts were recorded, e.g. the demo styles)"
    )
    sha256: str | None = Field(
        None, description="The start's weights; styles with a start in common blend"
    )
    name: str | None = Field(None, description="A base's file name")
    style_id: str | None = Field(None, description="For `style`: the style it started from")
    version: int | None = Field(None, description="For `style`: that style's version")
    shares_convolutions: bool = Field(
        False,
        description="Only its instance-norm γ/β were trained (`norm_first_steps` >= "
        "`iterations`): it shares every convolution with its start, and its requests share "
        "forward passes with those of its start's other such styles",
    )

    @classmethod
    def of(cls, rec: StyleRecord) -> StartOut | None:
        """Return the start of ``rec``'s serving version (None: nothing published)."""
        info = rec.version_info()
        if info is None:
            return None
        init = info.metrics.get("init")
        if not isinstance(init, dict) or not init.get("kind"):
            return cls(kind="unrecorded")
        params = info.metadata.get("train_params") or rec.params or {}
        norm_only = int(params.get("norm_first_steps") or 0) >= int(params.get("iterations") or 1)
        fields = {k: init.get(k) for k in ("sha256", "name", "style_id", "version")}
        kind = str(init["kind"])
        return cls(kind=kind, shares_convolutions=norm_only and kind != "scratch", **fields)


class StyleOut(BaseModel):
    """A style: status, training progress, versions and links."""

    id: str
    name: str
    status: Literal["queued", "training", "ready", "failed", "canceled"]
    servable: bool = Field(description="Whether a version exists to stylize with")
    state: str = Field(
        description="The style's state for people: `status` of a style without a version; "
        'with one, e.g. "ready · v1", "ready · v1 (retrain canceled)"'
    )
    current_version: int | None
    created_at: datetime
    updated_at: datetime
    revision: int
    progress: ProgressOut | None
    error: str | None
    loss_history: list[tuple[int, float]] = Field(
        description="`[iteration, total loss]` of the current or last run's progress "
        "reports (at most 200, evenly thinned)"
    )
    metrics: dict[str, Any] = Field(
        description="The current version's training metrics: held-out losses, timings, "
        "`init` (what the run started from: `scratch`, `base`, `style` or `continue`) and "
        "`score` (quality relative to image optimization on the same loss, measured after "
        'the version is published: `{"status": "scoring"}` until then; `r_mean` and per '
        "held-out photo `r`, 1 = as good as optimization, lower is worse; `bound: upper` "
        "means at most; `reference: true` when measured at the fixed reference)"
    )
    params: dict[str, Any]
    versions: list[VersionOut]
    links: StyleLinks
    estimated_seconds: float | None = Field(
        None,
        description="While queued or training: estimated seconds until the run is done, "
        "from the training speed the workers measured (service/estimate.py); null otherwise",
    )
    queue: QueueOut | None = Field(
        None,
        description="While queued: the style's place on the training queue and when it "
        "should start and be ready; null otherwise, and while its job is not on the queue "
        "(e.g. waiting to retry)",
    )
    start: StartOut | None = Field(
        None,
        description="Where the serving version started (which base it uses); null "
        "without a version. Styles blend (`POST /stylize` `style=a:0.7,b:0.3`) when their "
        "starts meet (docs/BLENDING.md)",
    )
    storage: StorageOut | None = Field(
        None,
        description="How the serving version is stored: its bytes, and the style version "
        "it is stored over (which base it depends on); null without a version",
    )
    owner: str | None = Field(
        None,
        description="Id of the API key that created the style (16 hex digits of a digest, "
        "never the key): that key or an admin key may train, cancel or delete it; null: "
        "no owner (a demo style, or made while the API was open), admin keys only",
    )

    @classmethod
    def from_record(cls, rec: StyleRecord) -> StyleOut:
        """Build the document of a store record."""
        base = f"/styles/{rec.id}"
        serving = rec.version_info()
        progress = None
        if rec.progress is not None:
            p = rec.progress
            progress = ProgressOut(
                iteration=p.iteration,
                total=p.total,
                fraction=round(p.fraction, 4),
                eta_s=p.eta_s,
                loss=p.loss,
            )
        return cls(
            id=rec.id,
            name=rec.name,
            status=rec.status.value,
            servable=rec.servable,
            state=state_text(rec),
            current_version=rec.current_version,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            revision=rec.revision,
            progress=progress,
            error=rec.error,
            owner=rec.owner,
            start=StartOut.of(rec),
            storage=None if serving is None else StorageOut.of(serving),
            loss_history=list(rec.loss_history),
            metrics=dict(rec.metrics),
            params=dict(rec.params),
            versions=[
                VersionOut(
                    version=v.version,
                    sha256=v.sha256,
                    size=v.size,
                    stored_bytes=v.stored_size,
                    created_at=v.created_at,
                    metrics=dict(v.metrics),
                )
                for v in rec.versions
            ],
            links=StyleLinks(
                self=base,
                style_image=f"{base}/image",
                events=f"{base}/events",
                train=f"{base}/train",
                cancel=f"{base}/cancel",
                preview=f"{base}/preview" if rec.preview is not None else None,
                training_preview=f"{base}/training-preview"
                if rec.run_preview is not None
                else None,
            ),
        )


class TrainIn(BaseModel):
    """Body of POST /styles/{id}/train; no body, or no params, trains with the last ones."""

    # Documentation only: the route parses its body itself with the same rules (bounded
    # JSON, the strict TrainParams), see service.routes.styles._parse_train_body.
    model_config = ConfigDict(extra="forbid")

    params: TrainParams | None = Field(
        None,
        description="Training parameters to change for this run, merged over those of "
        "the style's last run (give only what changes, e.g. `iterations` or "
        "`style_weight`); the result is validated as a whole. Default: the last run's",
    )


class StylePage(BaseModel):
    """One page of styles, newest first."""

    items: list[StyleOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")
    next: str | None = Field(description="URL of the next page, if any")


class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class ReadyOut(BaseModel):
    """Readiness, with what the runtime holds."""

    status: Literal["ready"]
    device: str
    dtype: str = Field(description="Compute dtype of the generators (float32 or bfloat16)")
    backend: str = Field(
        "torch",
        description="What runs the generators: torch, or onnxruntime (STYLIZE_BACKEND; "
        "auto measures both at start)",
    )
    backend_reason: str = Field("", description="Why that backend: the setting, or the timings")
    cached_models: int
    queue_depth: int
    warm_errors: dict[str, str]
    processes: int = Field(1, description="HTTP processes of this server that are warm")
    degraded: list[str] = Field(
        default_factory=list,
        description="Parts that are down while stylizing still works: queue_unavailable "
        "(Redis: styles cannot be trained, canceled or deleted), no_training_worker",
    )
    training_workers: int | None = Field(
        None, description="Workers listening on the training queue (null: Redis is down)"
    )
