"""``estimated_seconds``: what a training will cost, from the speed the workers publish.

Training workers measure their device's training speed (at start, and refined after
every run) and publish it in the Redis hash :data:`stylenet.cost.SPEED_KEY`, one
field per host and device (``worker/speed.py``). The newest one prices a training of
any params (:func:`stylenet.cost.estimate_seconds`): FLOPs of the params over the
device's measured rate, plus its per-step and per-run overheads. Without any
published speed (no worker has started yet) the estimate is ``None``.

Kept in one module so routes only call :func:`estimate_for_record` /
:func:`estimate_for_params`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from model_store import Status, StyleRecord
from stylenet import TrainParams
from stylenet.cost import SPEED_KEY, DeviceSpeed, estimate_seconds
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
