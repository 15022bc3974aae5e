"""``GET /stylize/progress/{id}``: how far a named stylize has got; ``DELETE`` stops it.

A client sends ``progress_id`` (a random id it makes up) with ``POST /stylize`` and polls
here while the request runs. Large images (the tiled lane) report the bands done;
others only their state. Stopping: a client that cancels its request (closes the
connection) stops a large forward at its next band; ``DELETE`` does the same for a
client that cannot close it (the request then ends 409 ``canceled``).
See :mod:`service.runtime.progress` (per HTTP process: another process answers 404).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from service.auth import KeyFirstRoute
from service.deps import RequireStylizeKey, RuntimeDep
from service.errors import NotFound
from service.runtime.progress import StylizeProgress
from service.schemas import ErrorOut

router = APIRouter(tags=["stylize"], route_class=KeyFirstRoute)

ProgressId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,64}$")]


class StylizeProgressOut(BaseModel):
    """Where a named ``POST /stylize`` stands."""

    id: str
    state: Literal["waiting", "running", "encoding", "done", "failed", "canceled"] = Field(
        description="waiting: for the large-image lane; running; encoding the result; "
        "then done, failed or canceled"
    )
    bands_done: int = Field(description="Bands of the tiled forward computed so far")
    bands_total: int | None = Field(
        description="Bands the tiled forward computes in all; null for an image small "
        "enough to go in one piece, or before the count is known"
    )
    fraction: float | None = Field(description="bands_done / bands_total; 1 when done")
    elapsed_s: float = Field(description="Seconds since the request was named here")
    eta_s: float | None = Field(description="Seconds left at the pace so far, or null")

    @classmethod
    def of(cls, entry: StylizeProgress) -> StylizeProgressOut:
        """Return the document of ``entry`` now."""
        end = entry.finished or time.monotonic()
        return cls(
            id=entry.id,
            state=entry.state,
            bands_done=entry.bands_done,
            bands_total=entry.bands_total,
            fraction=entry.fraction,
            elapsed_s=round(end - entry.created, 3),
            eta_s=entry.eta_s(),
        )


_NOT_FOUND = {
    404: {
        "model": ErrorOut,
        "description": "not_found: no request of that name here (not yet arrived, "
        "forgotten a while after its end, or on another HTTP process)",
    }
}


def _entry(runtime: RuntimeDep, progress_id: str) -> StylizeProgress:
    entry = runtime.progress.get(progress_id)
    if entry is None:
        raise NotFound(f"no stylize request named {progress_id!r} here", id=progress_id)
    return entry


@router.get(
    "/stylize/progress/{progress_id}",
    dependencies=[RequireStylizeKey],
    response_model=StylizeProgressOut,
    summary="How far a named stylize request has got",
    responses=_NOT_FOUND,
)
async def get_progress(progress_id: ProgressId, runtime: RuntimeDep) -> StylizeProgressOut:
    """Return the state and bands done of the request sent with this ``progress_id``."""
    return StylizeProgressOut.of(_entry(runtime, progress_id))


@router.delete(
    "/stylize/progress/{progress_id}",
    dependencies=[RequireStylizeKey],
    response_model=StylizeProgressOut,
    summary="Stop a named stylize request",
    responses=_NOT_FOUND,
)
async def stop_request(progress_id: ProgressId, runtime: RuntimeDep) -> StylizeProgressOut:
    """Stop the request at its next band (a large image); it ends 409 ``canceled``."""
    entry = _entry(runtime, progress_id)
    entry.stop.set()
    return StylizeProgressOut.of(entry)
