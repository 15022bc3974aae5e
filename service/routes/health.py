"""Health and metrics: ``/healthz`` (liveness), ``/readyz`` (readiness), ``/metrics``."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response

from service.deps import MetricsDep, ProcessGroupDep, RuntimeDep, TrainingDep
from service.errors import Unavailable
from service.schemas import ErrorOut, HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=HealthOut,
    summary="Liveness",
    responses={503: {"model": ErrorOut}},
)
async def healthz(runtime: RuntimeDep) -> HealthOut:
    """200 while the process serves and its device thread lives (a restart fixes neither)."""
    if runtime.executor is not None and not runtime.executor.alive():
        raise Unavailable("the device executor thread is gone", code="executor_dead")
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="Readiness: 503 until the inference runtime is warm",
    responses={503: {"model": ErrorOut}},
)
async def readyz(runtime: RuntimeDep, training: TrainingDep, group: ProcessGroupDep) -> ReadyOut:
    """200 once warm-up is done, the device thread answers and the batcher dispatches.

    With several HTTP processes (``STYLIZE_WORKERS``), once every one of them is warm.
    Redis and the training workers are not needed to stylize: while they are down this
    stays 200 and ``degraded`` names them.
    """
    if not runtime.ready:
        message = "the inference runtime is warming up" if not runtime.warmed else "runtime down"
        raise Unavailable(message, code="not_ready", retry_after=1)
    processes = 1
    if group is not None:
        processes = group.ready_count()
        if processes < group.size:
            message = f"{processes} of {group.size} HTTP processes are warm"
            raise Unavailable(message, code="not_ready", retry_after=1)
    queue = await anyio.to_thread.run_sync(training.health)
    return ReadyOut(
        degraded=queue.degraded,
        training_workers=queue.workers,
        status="ready",
        device=str(runtime.device),
        dtype=str(runtime.dtype).removeprefix("torch."),
        backend=runtime.backend,
        backend_reason=runtime.backend_reason,
        cached_models=len(runtime.cache),
        queue_depth=runtime.batcher.depth,
        warm_errors=runtime.warm_errors,
        processes=processes,
    )


@router.get("/metrics", response_class=Response, summary="Prometheus metrics")
async def metrics(metrics: MetricsDep, group: ProcessGroupDep) -> Response:
    """Return the app's metrics (all its HTTP processes' together) in the Prometheus format."""
    body = metrics.render() if group is None else group.render_metrics()
    return Response(body, media_type=metrics.content_type)
