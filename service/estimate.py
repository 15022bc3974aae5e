"""``estimated_seconds``: what a training will cost, from the speed the workers publish.

Training workers measure their device's training speed (at start, and refined after
every run) and publish it in the Redis hash :data:`stylenet.cost.SPEED_KEY`, one
field per host and device (``worker/speed.py``). The newest one prices a training of
any params (:func:`stylenet.cost.estimate_seconds`): FLOPs of the params over the
device's measured rate, plus its per-step and per-run overheads. Without any
published speed (no worker has started yet) the estimate is ``None``.

A queued style's place (:func:`queue_places`): its position on the training queue and
when it should start and be ready, from the jobs ahead of it and the runs under way.

Kept in one module so routes only call :func:`estimate_for_record`,
:func:`estimate_for_params` and :func:`queue_places`.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from model_store import Status, StyleRecord
from service.training import SCORE_FUNCTION, TRAIN_FUNCTION, QueuedJob, QueueSnapshot
from stylenet import TrainParams
from stylenet.cost import SPEED_KEY, DeviceSpeed, estimate_seconds, report_seconds
from stylenet.errors import InvalidParams

log = logging.getLogger(__name__)

#: How long a read of the published speeds is reused (GET /styles/{id} is polled).
CACHE_S = 5.0
_cache: dict[int, tuple[float, DeviceSpeed | None]] = {}


def training_speed(redis: Redis) -> DeviceSpeed | None:
    """Return the most recently measured training speed any worker published (or None)."""
    now = time.monotonic()
    cached = _cache.get(id(redis))
    if cached is not None and now - cached[0] < CACHE_S:
        return cached[1]
    try:
        raw = redis.hgetall(SPEED_KEY)
    except RedisError as exc:
        log.warning("could not read the published training speeds: %s", exc)
        # Kept like an answer: a list of styles asks once per style, and a Redis that
        # hangs would otherwise cost each of them the client's timeout.
        _cache[id(redis)] = (now, None)
        return None
    speeds = []
    for value in raw.values():
        try:
            speeds.append(DeviceSpeed.from_dict(json.loads(value)))
        except (ValueError, TypeError):
            continue
    newest = max(speeds, key=lambda s: s.measured_at, default=None)
    _cache[id(redis)] = (now, newest)
    return newest


def estimate_for_params(
    redis: Redis, params: TrainParams, remaining: int | None = None
) -> float | None:
    """Seconds a training of ``params`` takes on the workers' device (None: not measured)."""
    speed = training_speed(redis)
    if speed is None:
        return None
    return round(estimate_seconds(params, speed, remaining=remaining), 1)


def estimate_for_record(redis: Redis, rec: StyleRecord) -> float | None:
    """Seconds left for a queued or training style (None otherwise, or not measured).

    While it trains, the worker's smoothed ETA of the loop is used when reported, plus
    the run's fixed costs (evaluation and publishing); queued, the whole estimate.
    """
    if rec.status not in (Status.QUEUED, Status.TRAINING):
        return None
    try:
        params = TrainParams.from_dict(dict(rec.params))
    except InvalidParams:
        return None
    progress = rec.progress
    if rec.status is Status.TRAINING and progress is not None:
        remaining = max(0, progress.total - progress.iteration)
        estimate = estimate_for_params(redis, params, remaining=remaining)
        if progress.eta_s is not None and math.isfinite(progress.eta_s) and estimate is not None:
            speed = training_speed(redis)
            assert speed is not None
            loop = remaining * speed.step_seconds(params)
            return round(estimate - loop + progress.eta_s, 1)
        return estimate
    return estimate_for_params(redis, params)


def describe(redis: Redis) -> dict[str, Any]:
    """Return the published speed the estimates use (for ``POST /training/estimate``)."""
    speed = training_speed(redis)
    if speed is None:
        return {"measured": False}
    return {"measured": True, **speed.to_dict()}


@dataclass(frozen=True)
class QueuePlace:
    """Where a queued style's training stands (see :func:`queue_places`)."""

    position: int
    starts_in_seconds: float | None
    ready_in_seconds: float | None


#: Finds a style's record for the queue's pricing (None: no such style).
FindRecord = Callable[[str], StyleRecord | None]


def _params(data: Any) -> TrainParams | None:
    try:
        return TrainParams.from_dict(dict(data))
    except (InvalidParams, TypeError, ValueError):
        return None


def _style_of(job: QueuedJob) -> str | None:
    """Return the style a training or score job is for (None: another kind of job)."""
    if job.function in (TRAIN_FUNCTION, SCORE_FUNCTION) and job.args:
        return str(job.args[0])
    return None


def _waiting_cost(redis: Redis, job: QueuedJob, find: FindRecord) -> float | None:
    """Seconds a queued job will hold its worker (None: not known)."""
    speed = training_speed(redis)
    if speed is None:
        return None
    if job.function == TRAIN_FUNCTION and len(job.args) == 2:
        params = _params(job.args[1])
        return None if params is None else estimate_seconds(params, speed)
    if job.function == SCORE_FUNCTION and job.args:
        rec = find(str(job.args[0]))
        if rec is None:
            return 0.0  # its style is gone: the job ends at once
        params = _params(rec.params)
        return None if params is None else report_seconds(params, speed)
    return None


def _running_cost(redis: Redis, job: QueuedJob, find: FindRecord) -> float | None:
    """Seconds until a running job frees its worker (None: not known)."""
    style_id = _style_of(job)
    if style_id is None:
        return None
    rec = find(style_id)
    if rec is None:
        return 0.0  # deleted: the worker stops it
    if job.function == TRAIN_FUNCTION:
        if rec.status not in (Status.QUEUED, Status.TRAINING):
            return 0.0  # published, failed or canceled: the job is ending
        return estimate_for_record(redis, rec)
    speed, params = training_speed(redis), _params(rec.params)
    if speed is None or params is None:
        return None
    started = job.started_at or datetime.now(UTC)
    elapsed = (datetime.now(UTC) - started.astimezone(UTC)).total_seconds()
    return max(0.0, report_seconds(params, speed) - elapsed)


def queue_places(redis: Redis, snapshot: QueueSnapshot, find: FindRecord) -> dict[str, QueuePlace]:
    """Return the place of each style whose training waits on the queue, by style id.

    ``position`` counts every job ahead, quality scores of published styles included
    (1 = the next job a free worker takes). The times simulate the workers taking jobs
    in order: each of ``max(1, workers)`` workers is free once its running job's
    remaining time has passed (the style's smoothed ETA while it trains), and takes the
    next job, which holds it for that job's estimate. A style starts when a worker
    takes it and is ready its own estimate later. With no worker listening, the times
    are those of one worker (one is expected to come: ``stylize up`` runs one). Times
    are ``None`` without a published speed, or when a job ahead (or a run under way)
    cannot be priced.
    """
    free: list[float | None] = [_running_cost(redis, j, find) for j in snapshot.running]
    free += [0.0] * max(0, max(1, snapshot.workers) - len(free))
    known = training_speed(redis) is not None and all(t is not None for t in free)
    heap = [t for t in free if t is not None]
    heapq.heapify(heap)
    places: dict[str, QueuePlace] = {}
    for position, job in enumerate(snapshot.waiting, 1):
        cost = _waiting_cost(redis, job, find)
        start = heap[0] if known else None
        style_id = _style_of(job)
        if job.function == TRAIN_FUNCTION and style_id is not None:
            ready = None if start is None or cost is None else round(start + cost, 1)
            start_s = None if start is None else round(start, 1)
            places.setdefault(style_id, QueuePlace(position, start_s, ready))
        if cost is None:
            known = False
        elif known:
            heapq.heapreplace(heap, heap[0] + cost)
    return places
