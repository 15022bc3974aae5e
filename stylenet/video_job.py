"""What a clip job (``POST /videos``) asks for: the arguments the API enqueues, checked twice.

The service builds a :class:`ClipJobSpec`, enqueues ``spec.to_dict()`` (JSON, by dotted
path), and the worker validates it again with :meth:`ClipJobSpec.from_dict`: one strict
schema on both sides, so a job written by hand into Redis cannot make the worker decode
without limits.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidParams
from .flow_blend import DEFAULT_FLOW_WEIGHT
from .temporal import TemporalMode
from .video_read import VideoLimits


class ClipJobSpec(BaseModel):
    """One clip job's parameters (the style already resolved to an id and version).

    Attributes:
        style_id, version: the generator to run (``model_store`` ids).
        format: output container; None keeps the input's family.
        max_side: the frames' longer side after downscaling.
        strength, preserve_color: as ``POST /stylize``'s.
        temporal, stats_frames: :mod:`stylenet.temporal`'s mode and its sample.
        flow_weight: the ``flow`` mode's blend weight (:mod:`stylenet.flow_blend`).
        batch_frames: frames per forward.
        max_seconds, max_frames, max_frame_pixels, max_total_pixels: the
            :class:`~stylenet.video_read.VideoLimits` the worker decodes under (the API
            checked the header against the same ones; decoding counts again).
        ttl_s: seconds the job's state (and so its result) is kept after each change.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    style_id: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)
    format: Literal["mp4", "webm", "gif", "webp"] | None = None
    max_side: int = Field(ge=16, le=8192)
    strength: float = Field(1.0, ge=0.0, le=1.0)
    preserve_color: bool = False
    temporal: TemporalMode = "per_frame"
    stats_frames: int = Field(8, ge=1, le=64)
    flow_weight: float = Field(DEFAULT_FLOW_WEIGHT, ge=0.0, lt=1.0)
    batch_frames: int = Field(4, ge=1, le=64)
    max_seconds: float = Field(gt=0)
    max_frames: int = Field(ge=1)
    max_frame_pixels: int = Field(ge=1)
    max_total_pixels: int = Field(ge=1)
    ttl_s: int = Field(ge=1)

    @property
    def limits(self) -> VideoLimits:
        """The decoding limits."""
        return VideoLimits(
            max_seconds=self.max_seconds,
            max_frames=self.max_frames,
            max_frame_pixels=self.max_frame_pixels,
            max_total_pixels=self.max_total_pixels,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the job's JSON argument."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: object) -> ClipJobSpec:
        """Validate a job's argument.

        Raises:
            InvalidParams: not a valid spec (``field`` names the first bad one).
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ())) or "spec"
            raise InvalidParams(field, str(first.get("msg"))) from exc


__all__ = ["ClipJobSpec"]
