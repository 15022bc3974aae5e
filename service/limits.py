"""Per-key limits, held in Redis so every HTTP process and host shares them.

* **Trainings at once** (``trainings_per_key``): a key's trainings queued or running.
* **Daily training budget** (``training_budget_s``): estimated training seconds a key may
  start per UTC day, charged at admission from the workers' measured speed
  (:mod:`service.estimate`); a training that cannot be priced (no worker has measured
  its speed yet) is charged nothing.
* **Stylize rate** (``stylize_rate_per_s``, ``stylize_burst``): a token bucket per key, or
  per client address for requests without a valid key.

Admin keys are not limited; nor is anyone while the API is open (no keys), except by the
stylize rate, which then goes by client address. Refusals are 429 with ``Retry-After``
(:class:`~service.errors.QuotaExceeded`, :class:`~service.errors.RateLimited`).

Each check is one Lua script, one atomic step in Redis: two processes admitting at once
cannot both take a key's last slot or token. The scripts read Redis's clock, so hosts with
skewed clocks agree. Keys::

    stylize:quota:active:<key id>         ZSET  style id -> when its slot was taken
    stylize:quota:holder                  HASH  style id -> key id holding its slot
    stylize:quota:spent:<key id>:<day>    estimated seconds started that UTC day
    stylize:rate:<key id | addr:ip>       HASH  tokens, ts (expires once full again)

**When a training slot is freed.** The slots are not counted by hand; the training
queue's own records decide: a slot stays taken while RQ's job ``train-<style id>`` is
queued, scheduled (a retry waiting), started or in any other status short of an end, and
is free once RQ records it finished, failed, stopped or canceled, or once the job is
gone: however the training ended (published, failed, canceled, deleted, or its worker
killed and the job given up by RQ's clean-up of abandoned jobs). The script prunes such
slots each time the key asks again. Between taking a slot and enqueueing (the style is
being saved) there is no job yet, and the slot counts for :data:`PENDING_GRACE_S`; a
failed enqueue gives it back at once. A style retrained by another key moves its slot to
that key. The scripts read RQ's job hashes directly, so they need one Redis (no cluster),
as RQ does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from rq.job import Job, JobStatus

from model_store import ModelStore, ModelStoreError
from service.async_redis import close_within
from service.auth import Caller
from service.errors import InvalidOption, QuotaExceeded, RateLimited, Unavailable
from service.estimate import estimate_for_params, estimate_for_record
from service.settings import ServiceSettings
from service.training import job_id
from stylenet import TrainParams

log = logging.getLogger(__name__)

#: Seconds a slot taken for a style counts before its job exists (saving the style).
PENDING_GRACE_S = 300
#: ``Retry-After`` of a key at its limit of trainings when none of them can be priced.
DEFAULT_RETRY_AFTER_S = 60
#: RQ statuses of a job that gave its slot back; any other (queued, started, scheduled,
#: deferred, created, ...) holds it.
ENDED_JOB_STATUSES = (
    JobStatus.FINISHED,
    JobStatus.FAILED,
    JobStatus.STOPPED,
    JobStatus.CANCELED,
)
PREFIX = "stylize:quota"
HOLDER_KEY = f"{PREFIX}:holder"
DAY_S = 86_400

_ENDED_LUA = "{" + ", ".join(f"['{s.value}'] = true" for s in ENDED_JOB_STATUSES) + "}"

# KEYS: active zset, holder hash, spent key prefix.
# ARGV: key id, style id, limit, grace s, job key prefix, cost s, budget s.
# Returns {0, count} taken; {1, count, live ids...} too many; {2, spent, retry} budget.
ACQUIRE_LUA = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local kid, sid = ARGV[1], ARGV[2]
local limit, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local ended = {_ENDED_LUA}
local live = {{}}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local m, taken = members[i], tonumber(members[i + 1])
  local mine = redis.call('HGET', KEYS[2], m) == kid
  local keep = false
  if m ~= sid and mine then
    local status = redis.call('HGET', ARGV[5] .. m, 'status')
    if status then keep = ended[status] == nil else keep = now - taken < grace end
  end
  if keep then
    live[#live + 1] = m
  else
    -- Ended, moved to another key, or the style asked for again (taken anew below).
    redis.call('ZREM', KEYS[1], m)
    if mine then redis.call('HDEL', KEYS[2], m) end
  end
end
if limit > 0 and #live >= limit then
  return {{1, #live, unpack(live)}}
end
if budget > 0 then
  local day = math.floor(now / {DAY_S})
  local spent_key = KEYS[3] .. ':' .. day
  local spent = tonumber(redis.call('GET', spent_key) or '0')
  if spent + cost > budget then
    return {{2, tostring(spent), tostring({DAY_S} * (day + 1) - now)}}
  end
  if cost > 0 then
    redis.call('INCRBYFLOAT', spent_key, cost)
    redis.call('EXPIRE', spent_key, {2 * DAY_S})
  end
end
redis.call('ZADD', KEYS[1], now, sid)
redis.call('HSET', KEYS[2], sid, kid)
return {{0, #live + 1}}
"""

# KEYS: active zset, holder hash, spent key prefix. ARGV: key id, style id, cost s.
RELEASE_LUA = f"""
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
redis.call('ZREM', KEYS[1], ARGV[2])
local cost = tonumber(ARGV[3])
if cost > 0 then
  local t = redis.call('TIME')
  local spent_key = KEYS[3] .. ':' .. math.floor(tonumber(t[1]) / {DAY_S})
  if redis.call('EXISTS', spent_key) == 1 then redis.call('INCRBYFLOAT', spent_key, -cost) end
end
return 1
"""

# KEYS: bucket. ARGV: rate (tokens/s), burst. Returns {1, '0'} taken, {0, wait s} refused.
TOKEN_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
if tokens < 1 then
  return {0, tostring((1 - tokens) / rate)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {1, '0'}
"""


@dataclass(frozen=True)
class Refusal:
    """Why :meth:`TrainingQuota.acquire` refused a training.

    Attributes:
        reason: ``trainings`` (as many as allowed queued or running) or ``budget``.
        active: the key's style ids whose trainings hold its slots (``trainings``).
        spent_s: estimated seconds the key started today (``budget``).
        retry_after_s: seconds until the budget renews (``budget``).
    """

    reason: str
    active: tuple[str, ...] = ()
    spent_s: float = 0.0
    retry_after_s: float | None = None


def _redis_unavailable(exc: RedisError) -> Unavailable:
    return Unavailable(
        f"the training queue is unavailable: {exc}", code="queue_unavailable", retry_after=5
    )


class TrainingQuota:
    """Slots of trainings per key and the daily budget, in Redis (see the module doc)."""

    def __init__(self, redis: Redis, *, limit: int, budget_s: float) -> None:
        """Limit each key to ``limit`` trainings at once (0: none) and ``budget_s`` a day."""
        self.limit = limit
        self.budget_s = budget_s
        self._redis = redis
        self._acquire = redis.register_script(ACQUIRE_LUA)
        self._release = redis.register_script(RELEASE_LUA)
        self._job_prefix = _text(Job.key_for(job_id("")))

    @property
    def enabled(self) -> bool:
        """Whether any limit is set."""
        return self.limit > 0 or self.budget_s > 0

    @staticmethod
    def _keys(owner: str) -> list[str]:
        return [f"{PREFIX}:active:{owner}", HOLDER_KEY, f"{PREFIX}:spent:{owner}"]

    def acquire(self, owner: str, style_id: str, cost_s: float = 0.0) -> Refusal | None:
        """Take a slot for ``style_id``'s training and charge ``cost_s``; None when taken.

        Call it before the job is enqueued (within :data:`PENDING_GRACE_S`), and
        :meth:`release` if the enqueue fails.

        Raises:
            Unavailable: Redis cannot be reached.
        """
        args = [owner, style_id, self.limit, PENDING_GRACE_S, self._job_prefix]
        args += [repr(float(cost_s)), repr(float(self.budget_s))]
        try:
            reply = self._acquire(keys=self._keys(owner), args=args)
        except RedisError as exc:
            raise _redis_unavailable(exc) from exc
        code = int(reply[0])
        if code == 0:
            return None
        if code == 1:
            return Refusal("trainings", active=tuple(_text(v) for v in reply[2:]))
        return Refusal("budget", spent_s=float(reply[1]), retry_after_s=float(reply[2]))

    def release(self, owner: str, style_id: str, cost_s: float = 0.0) -> None:
        """Give back a slot (and its charge) whose training was never enqueued."""
        try:
            self._release(keys=self._keys(owner), args=[owner, style_id, repr(float(cost_s))])
        except RedisError as exc:  # the slot then frees itself after PENDING_GRACE_S
            log.warning("could not give back the training slot of %s: %s", style_id, exc)

    @contextlib.contextmanager
    def slot(
        self, caller: Caller, style_id: str, params: TrainParams, store: ModelStore
    ) -> Iterator[None]:
        """Hold a slot of the caller's key for the block that enqueues ``style_id``'s training.

        The slot is kept when the block succeeds (the job frees it when it ends) and
        given back when it raises. Admin keys and an open API take no slot.

        Raises:
            QuotaExceeded: the key has ``limit`` trainings queued or running, or its
                budget for today cannot pay this training's estimate.
            InvalidOption: this training alone costs more than the daily budget.
            Unavailable: Redis cannot be reached.
        """
        owner = caller.key_id
        if owner is None or caller.admin or not self.enabled:
            yield
            return
        cost = 0.0
        if self.budget_s > 0:
            cost = estimate_for_params(self._redis, params) or 0.0
            if cost > self.budget_s:
                raise InvalidOption(
                    f"this training is estimated at {cost:.0f} s, more than the daily "
                    f"budget of {self.budget_s:.0f} s per key: train fewer iterations or "
                    "smaller images",
                    code="training_too_long",
                    field="params",
                    estimated_seconds=cost,
                    budget_s=self.budget_s,
                )
        refusal = self.acquire(owner, style_id, cost)
        if refusal is not None:
            raise self._refused(refusal, cost, store)
        try:
            yield
        except BaseException:
            self.release(owner, style_id, cost)
            raise

    def _refused(self, refusal: Refusal, cost: float, store: ModelStore) -> QuotaExceeded:
        if refusal.reason == "budget":
            return QuotaExceeded(
                f"this API key started {refusal.spent_s:.0f} s of its {self.budget_s:.0f} s "
                f"of training today; this one is estimated at {cost:.0f} s",
                reason="budget",
                retry_after=refusal.retry_after_s,
                budget_s=self.budget_s,
                spent_s=round(refusal.spent_s, 1),
            )
        return QuotaExceeded(
            f"this API key has {len(refusal.active)} trainings queued or running, the most "
            f"it may have at once: wait for one to end, or cancel one",
            reason="trainings",
            retry_after=self._soonest_end(refusal.active, store),
            limit=self.limit,
            active=list(refusal.active),
        )

    def _soonest_end(self, style_ids: tuple[str, ...], store: ModelStore) -> float:
        """Seconds until the first of these trainings should end (estimated), else a default."""
        estimates = []
        for style_id in style_ids[:8]:
            try:
                estimate = estimate_for_record(self._redis, store.get(style_id))
            except ModelStoreError:
                continue
            if estimate is not None:
                estimates.append(estimate)
        return max(1.0, min(estimates)) if estimates else DEFAULT_RETRY_AFTER_S


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StylizeRateLimiter:
    """A token bucket per key (or client address) for ``POST /stylize``, in Redis.

    If Redis cannot be asked, requests are let through (stylizing does not need Redis
    otherwise) and Redis is left alone for :attr:`pause_s`, so an outage costs one
    timeout, not one per request.
    """

    #: Seconds the limiter stays out of the way after Redis failed to answer.
    pause_s = 5.0

    def __init__(self, redis: AsyncRedis, *, rate_per_s: float, burst: int) -> None:
        """Allow ``rate_per_s`` requests a second per bucket, ``burst`` at once."""
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._redis = redis
        self._take = redis.register_script(TOKEN_BUCKET_LUA)
        self._paused_until = 0.0

    async def check(self, bucket: str) -> None:
        """Take a token from ``bucket``.

        Raises:
            RateLimited: the bucket is empty (``retry_after``: until the next token).
        """
        if time.monotonic() < self._paused_until:
            return
        try:
            taken, wait = await self._take(
                keys=[f"stylize:rate:{bucket}"], args=[repr(self.rate_per_s), self.burst]
            )
        except (RedisError, OSError) as exc:
            self._paused_until = time.monotonic() + self.pause_s
            log.warning("stylize rate limit not applied for %.0f s: %s", self.pause_s, exc)
            return
        if int(taken) == 0:
            raise RateLimited(
                f"too many stylize requests: at most {self.rate_per_s:g} a second "
                f"(bursts of {self.burst}); retry later",
                retry_after=max(1.0, math.ceil(float(wait))),
                limit_per_s=self.rate_per_s,
                burst=self.burst,
            )

    async def close(self) -> None:
        """Close the connection pool (bounded: :mod:`service.async_redis`)."""
        await close_within(self._redis, "stylize rate limit")


class Limits:
    """The app's limits: :class:`TrainingQuota` and, when a rate is set, the rate limiter."""

    def __init__(self, settings: ServiceSettings, redis: Redis) -> None:
        """Build the limits of ``settings`` on ``redis`` (the operational client)."""
        self.trainings = TrainingQuota(
            redis, limit=settings.trainings_per_key, budget_s=settings.training_budget_s
        )
        self.stylize: StylizeRateLimiter | None = None
        if settings.stylize_rate_per_s > 0:
            # Its own client with short timeouts: it sits on every stylize request.
            client = AsyncRedis.from_url(
                settings.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5
            )
            self.stylize = StylizeRateLimiter(
                client,
                rate_per_s=settings.stylize_rate_per_s,
                burst=settings.effective_stylize_burst,
            )

    async def close(self) -> None:
        """Release the rate limiter's connections."""
        if self.stylize is not None:
            await self.stylize.close()
