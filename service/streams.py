"""Limits on event streams (``GET /styles/{id}/events``): per client, and per process.

A stream holds a connection for up to ``events_max_s`` (600 s). Unlimited, 1,100 of them
from one client took every connection uvicorn allows (``limit_concurrency``), and every
route, ``/healthz`` and ``/readyz`` included, answered 503 while they were held (issue 24).
Two limits now, each taken when a stream starts and given back when it ends:

* **Per client** (``streams_per_client``, 16): a valid key, else the client's address (the
  proxy's ``X-Forwarded-For`` where uvicorn trusts it: ``FORWARDED_ALLOW_IPS``). Beyond:
  429 ``too_many_streams``. Counted **in Redis**, because the kernel spreads one client's
  connections over a host's HTTP processes (``STYLIZE_WORKERS``) and a proxy spreads them
  over hosts: counted per process, a client could hold N times its limit, N depending on
  the deployment. Each open stream is a *lease*: a member of the sorted set
  ``stylize:streams:<client>`` scored by its expiry on Redis's clock. The process renews
  its leases every :data:`LEASE_S` / 3 and removes one when its stream ends, so a process
  that dies without cleaning up (``kill -9``, a lost host) stops counting within
  :data:`LEASE_S`. When Redis does not answer, each process counts its own streams per
  client (the limit then holds per process) and leaves Redis alone for :data:`PAUSE_S`;
  the next renewal puts the leases taken meanwhile into Redis.
* **Per process** (``effective_max_streams``, half of ``limit_concurrency``): counted in
  memory, because what it protects is per process: uvicorn's connection limit. Streams
  never hold more than that share of a process's connections, so other requests still
  find one. Beyond: 503 ``streams_full``. ``/healthz`` and ``/readyz`` are answered even
  past the connection limit (:mod:`service.server`).

Use :meth:`StreamLimiter.slot` around the whole life of a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from service.async_redis import CLOSE_TIMEOUT_S, close_within
from service.errors import TooManyStreams, Unavailable
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

#: Seconds a lease counts without renewal: how long a dead process's streams still count.
LEASE_S = 30.0
#: Seconds the limiter counts locally after Redis failed to answer.
PAUSE_S = 5.0
#: ``Retry-After`` of a client at its limit: its streams end when their styles settle or
#: after ``events_max_s``, which the server cannot foresee.
CLIENT_RETRY_AFTER_S = 10
#: ``Retry-After`` of a process at its limit.
PROCESS_RETRY_AFTER_S = 5
PREFIX = "stylize:streams"
#: Leases renewed per script call.
RENEW_BATCH = 500

# KEYS: the client's lease set. ARGV: lease id, limit, lease s.
# Returns the leases held with this one, or minus those held when refused.
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return -held end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000))
return held + 1
"""

# KEYS: lease sets. ARGV: lease s, then the lease id of each key. A lease Redis lost (a
# restart, FLUSHALL) is added back: the stream is still open.
RENEW_LUA = """
local t = redis.call('TIME')
local lease = tonumber(ARGV[1])
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1e6 + lease
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, expiry, ARGV[i + 1])
  redis.call('PEXPIRE', key, math.ceil(lease * 1000))
end
return #KEYS
"""


@dataclass(frozen=True)
class _Lease:
    client: str
    id: str

    @property
    def key(self) -> str:
        return f"{PREFIX}:{self.client}"


class StreamLimiter:
    """Slots of event streams: per client (in Redis, see the module doc) and per process.

    Args:
        redis: an asyncio client with short timeouts; None counts per process only.
        per_client: streams one client may hold (0: no limit).
        per_process: streams this process holds at most.
        metrics: where open and refused streams are counted.
        lease_s: seconds a lease counts without renewal.
    """

    def __init__(
        self,
        redis: AsyncRedis | None,
        *,
        per_client: int,
        per_process: int,
        metrics: ServiceMetrics,
        lease_s: float = LEASE_S,
    ) -> None:
        """Set up the counts; call :meth:`start` in the event loop that serves streams."""
        self.per_client = per_client
        self.per_process = per_process
        self.lease_s = lease_s
        self._redis = redis
        self._acquire = redis.register_script(ACQUIRE_LUA) if redis is not None else None
        self._renew = redis.register_script(RENEW_LUA) if redis is not None else None
        self._metrics = metrics
        self._leases: set[_Lease] = set()
        self._local: Counter[str] = Counter()
        self._open = 0
        self._paused_until = 0.0
        # Lease ids: this process's token and a sequence number (unique across processes).
        token = uuid.uuid4().hex[:12]
        self._ids = (f"{token}:{n}" for n in itertools.count())
        self._renewer: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        """Streams this process holds now."""
        return self._open

    def start(self) -> None:
        """Start renewing this process's leases in the background."""
        if self._redis is not None and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="stylize-streams")

    async def close(self) -> None:
        """Stop renewing and close the Redis client (open leases then expire)."""
        if self._renewer is not None:
            self._renewer.cancel()
            # Bounded too: a renewal cancelled inside redis-py may not end at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.gather(self._renewer, return_exceptions=True)
        if self._redis is not None:
            await close_within(self._redis, "event stream limits")

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        """Hold a stream slot of ``client`` (a key id, or ``addr:<address>``) for the block.

        Raises:
            Unavailable: ``streams_full``, this process holds ``per_process`` streams.
            TooManyStreams: the client holds ``per_client`` streams.
        """
        if self._open >= self.per_process:
            self._metrics.streams_refused.labels(reason="streams_full").inc()
            raise Unavailable(
                f"this server holds {self._open} event streams, the most it keeps open: "
                "retry shortly, or read GET /styles/{id} meanwhile",
                code="streams_full",
                retry_after=PROCESS_RETRY_AFTER_S,
            )
        # Both counts taken before the first await: two streams cannot both take the last
        # place, and one still waiting for Redis counts if Redis then stops answering.
        self._open += 1
        self._local[client] += 1
        self._metrics.streams.inc()
        lease = _Lease(client, next(self._ids))
        admitted = False
        try:
            await self._take(lease)
            admitted = True
            self._leases.add(lease)
            try:
                yield
            finally:
                self._leases.discard(lease)
        finally:
            self._open -= 1
            self._local[client] -= 1
            if not self._local[client]:
                del self._local[client]
            self._metrics.streams.dec()
            if admitted:  # in Redis by its acquisition or by a renewal since
                await self._give_back(lease)

    async def _take(self, lease: _Lease) -> None:
        """Take ``lease`` in Redis, or by this process's count (``_local`` has it already)."""
        if not self.per_client:
            return
        if self._acquire is not None and time.monotonic() >= self._paused_until:
            try:
                held = int(
                    await self._acquire(
                        keys=[lease.key], args=[lease.id, self.per_client, repr(self.lease_s)]
                    )
                )
            except (RedisError, OSError) as exc:
                # A lease that a timed-out call added anyway lapses within lease_s.
                self._pause(exc)
            else:
                if held < 0:
                    raise self._refused(-held)
                return
        # Redis did not answer: this process's own count, this stream included.
        if self._local[lease.client] > self.per_client:
            raise self._refused(self._local[lease.client] - 1)

    def _refused(self, held: int) -> TooManyStreams:
        self._metrics.streams_refused.labels(reason="too_many_streams").inc()
        return TooManyStreams(
            f"this client holds {held} event streams, the most one key (or one address "
            f"without a key) may hold at once ({self.per_client}): close one, or read "
            "GET /styles/{id} meanwhile",
            retry_after=CLIENT_RETRY_AFTER_S,
            limit=self.per_client,
        )

    async def _give_back(self, lease: _Lease) -> None:
        if self._redis is None or not self.per_client or time.monotonic() < self._paused_until:
            return  # not taken in Redis, or Redis is away: the lease expires by itself
        # Shielded: the stream usually ends by cancellation (the client left, or shutdown).
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + 1.0):
            try:
                await self._redis.zrem(lease.key, lease.id)
            except (RedisError, OSError) as exc:
                log.info("stream lease %s left to expire: %s", lease.id, exc)

    def _pause(self, exc: BaseException) -> None:
        self._paused_until = time.monotonic() + PAUSE_S
        log.warning("event streams counted per process for %.0f s: Redis: %s", PAUSE_S, exc)

    async def renew(self) -> None:
        """Renew (or put back) every lease this process holds in Redis."""
        leases = list(self._leases)
        if self._renew is None or not self.per_client or not leases:
            return
        for start in range(0, len(leases), RENEW_BATCH):
            batch = leases[start : start + RENEW_BATCH]
            await self._renew(
                keys=[lease.key for lease in batch],
                args=[repr(self.lease_s), *(lease.id for lease in batch)],
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except (RedisError, OSError) as exc:
                self._pause(exc)


__all__ = ["LEASE_S", "StreamLimiter"]
