"""Request options and response documents of the HTTP API (pydantic models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_store import StyleRecord
from model_store.ids import STYLE_ID_RE
from stylenet.generators import MIN_SIDE

OutputFormat = Literal["png", "jpeg", "webp"]


class StylizeOptions(BaseModel):
    """Options of ``POST /stylize``, from the query string or multipart form fields."""

    model_config = ConfigDict(extra="forbid")

    style: str = Field(pattern=f"^{STYLE_ID_RE.pattern}$", description="Style id to apply")
    version: int | None = Field(None, ge=1, description="Style version (default: current)")
    max_side: int | None = Field(
        None,
        ge=MIN_SIDE,
        description="Downscale so the longer side is at most this many pixels "
        "(default and upper bound: settings max_side_default / max_side_limit)",
    )
    strength: float = Field(1.0, ge=0.0, le=1.0, description="0: the input, 1: full style")
    preserve_color: bool = Field(False, description="Keep the input's colours")
    format: OutputFormat | None = Field(
        None, description="Output format (default: the input's format)"
    )
    quality: int | None = Field(None, ge=1, le=100, description="JPEG/WebP quality")


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


class VersionOut(BaseModel):
    """A published set of weights."""

    version: int
    sha256: str
    size: int
    created_at: datetime
    metrics: dict[str, Any]


class StyleLinks(BaseModel):
    """Related resources of a style."""

    self: str
    style_image: str
    events: str
    train: str
    cancel: str
    preview: str | None = None


class StyleOut(BaseModel):
    """A style: status, training progress, versions and links."""

    id: str
    name: str
    status: Literal["queued", "training", "ready", "failed", "canceled"]
    servable: bool = Field(description="Whether a version exists to stylize with")
    current_version: int | None
    created_at: datetime
    updated_at: datetime
    revision: int
    progress: ProgressOut | None
    error: str | None
    metrics: dict[str, Any] = Field(
        description="The current version's training metrics: held-out losses, timings and "
        "`yardstick` (quality relative to image optimization on the same loss: `r_mean` "
        "and per held-out photo `r`; 1 = as good as optimization, lower is worse)"
    )
    params: dict[str, Any]
    versions: list[VersionOut]
    links: StyleLinks
    estimated_seconds: float | None = Field(
        None,
        description="While queued or training: estimated seconds until the run is done, "
        "from the training speed the workers measured (service/estimate.py); null otherwise",
    )

    @classmethod
    def from_record(cls, rec: StyleRecord) -> StyleOut:
        """Build the document of a store record."""
        base = f"/styles/{rec.id}"
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
            current_version=rec.current_version,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            revision=rec.revision,
            progress=progress,
            error=rec.error,
            metrics=dict(rec.metrics),
            params=dict(rec.params),
            versions=[
                VersionOut(
                    version=v.version,
                    sha256=v.sha256,
                    size=v.size,
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
            ),
        )


class TrainIn(BaseModel):
    """Body of ``POST /styles/{id}/train`` (optional: no body trains with the same params)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] | None = Field(
        None,
        description="Training parameters (TrainParams) as a JSON object, replacing the "
        "style's; default: the parameters of its last run",
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
    cached_models: int
    queue_depth: int
    warm_errors: dict[str, str]
