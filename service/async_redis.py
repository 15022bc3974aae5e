"""Closing the API's asyncio Redis clients without letting a stuck close hold the process.

redis-py's ``aclose`` waits for each connection's ``StreamWriter.wait_closed()``, which
can wait forever (redis/redis-py#3941): a test's event loop sat idle in
``StreamLimiter.close`` for ten minutes, its three connections still open. A server
shutting down must not hang on it, so the close is given a few seconds and then left to
the garbage collector (the sockets close with their transports).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis as AsyncRedis

log = logging.getLogger(__name__)

#: How long a client's close may take before it is abandoned.
CLOSE_TIMEOUT_S = 2.0


async def close_within(redis: AsyncRedis, what: str, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close ``redis`` (its pool's connections), or give up after ``timeout_s`` with a log."""
    try:
        async with asyncio.timeout(timeout_s):
            await redis.aclose()
    except TimeoutError:
        log.warning("%s: Redis client not closed within %g s; left to close", what, timeout_s)
