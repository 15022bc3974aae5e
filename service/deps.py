"""Dependency aliases: the one way routes reach the resources the lifespan built.

Resources live on ``app.state`` (see :func:`service.app.create_app`); routes declare
``runtime: RuntimeDep`` and friends instead of reaching into ``request.app``. They are
``async`` because FastAPI runs plain ``def`` dependencies in its thread pool: three
thread hops per request for an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from model_store import ModelStore
from service.auth import Caller, require_key, require_stylize_key
from service.limits import Limits
from service.metrics import ServiceMetrics
from service.processes import ProcessGroup
from service.runtime import InferenceRuntime
from service.settings import ServiceSettings
from service.streams import StreamLimiter
from service.training import TrainingQueue


async def get_settings(request: Request) -> ServiceSettings:
    """Return the app's settings."""
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    """Return the app's model store."""
    return request.app.state.store


async def get_runtime(request: Request) -> InferenceRuntime:
    """Return the app's inference runtime."""
    return request.app.state.runtime


async def get_training(request: Request) -> TrainingQueue:
    """Return the app's training queue (RQ producer)."""
    return request.app.state.training


async def get_metrics(request: Request) -> ServiceMetrics:
    """Return the app's metrics."""
    return request.app.state.metrics


async def get_limits(request: Request) -> Limits:
    """Return the app's per-key limits (trainings, budget, stylize rate)."""
    return request.app.state.limits


async def get_streams(request: Request) -> StreamLimiter:
    """Return the app's event stream limits."""
    return request.app.state.streams


async def get_process_group(request: Request) -> ProcessGroup | None:
    """Return the group of HTTP processes this one belongs to (``None``: it is alone)."""
    return request.app.state.process_group


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
RuntimeDep = Annotated[InferenceRuntime, Depends(get_runtime)]
TrainingDep = Annotated[TrainingQueue, Depends(get_training)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
ProcessGroupDep = Annotated[ProcessGroup | None, Depends(get_process_group)]
LimitsDep = Annotated[Limits, Depends(get_limits)]
StreamsDep = Annotated[StreamLimiter, Depends(get_streams)]
#: Who sent the request (its key's id, admin or not); the same check as the guards below,
#: which FastAPI runs once per request.
CallerDep = Annotated[Caller, Depends(require_key)]
StylizeCallerDep = Annotated[Caller, Depends(require_stylize_key)]

#: Route-level guards: ``dependencies=[RequireKey]``.
RequireKey = Depends(require_key)
RequireStylizeKey = Depends(require_stylize_key)
