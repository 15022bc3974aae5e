"""``POST /training/estimate``: what a training of some params would cost, before starting it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from service.deps import TrainingDep
from service.estimate import describe, estimate_for_params
from service.schemas import ErrorOut
from stylenet import TrainParams

router = APIRouter(prefix="/training", tags=["styles"])


class EstimateIn(BaseModel):
    """Training parameters to price (TrainParams as a JSON object; empty: the defaults)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict)


class EstimateOut(BaseModel):
    """The price of a training on the workers' device."""

    estimated_seconds: float | None = Field(
        description="Seconds the training would take once started (null: no worker has "
        "measured its speed yet)"
    )
    speed: dict[str, Any] = Field(
        description="The measured speed used: `measured`, and when true `device`, `points` "
        "([GFLOP per step, seconds per step]), `run_overhead_s`, `measured_at` (Unix time), "
        "`source` (`calibration` or `runs`)"
    )


@router.post(
    "/estimate",
    response_model=EstimateOut,
    summary="Estimate how long a training of these params takes",
    responses={422: {"model": ErrorOut}},
)
def estimate(body: EstimateIn, training: TrainingDep) -> EstimateOut:
    """Price ``params`` with the training speed the workers published."""
    params = TrainParams.from_dict(dict(body.params))  # InvalidParams -> 422
    return EstimateOut(
        estimated_seconds=estimate_for_params(training.redis, params),
        speed=describe(training.redis),
    )
