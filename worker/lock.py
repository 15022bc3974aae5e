"""One trainer per style across every worker and host: a Redis lease per style id.

The RQ job id (``train-<style_id>``) already keeps two *queued* jobs of a style apart,
but one job can still run twice at once: RQ requeues the job of a worker it believes
dead (missed heartbeats) while that worker's work horse may still be training. Both
would write the same checkpoint. So a job holds ``stylize:train-lock:<style_id>`` for as
long as it trains; the lease expires ``ttl`` seconds after its holder stops refreshing
it (a background thread refreshes it every ``ttl / 3``).

The token is ``<worker name>:<job id>``, which both the work horse and its parent worker
know, so the parent can release the lease the moment the horse dies (``kill -9``)
instead of making the retried job wait for it to expire.
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis

log = logging.getLogger(__name__)

KEY_TEMPLATE = "stylize:train-lock:{}"

# Compare-and-act scripts: only the holder may extend or release its lease.
_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"  # noqa: E501
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


def lock_token(worker_name: str, job_id: str) -> str:
    """Return the lease token of ``job_id`` run by ``worker_name``."""
    return f"{worker_name}:{job_id}"


def release(connection: Redis, style_id: str, token: str) -> bool:
    """Release the lease of ``style_id`` if ``token`` holds it; return whether it did."""
    return release_key(connection, KEY_TEMPLATE.format(style_id), token)


def release_key(connection: Redis, key: str, token: str) -> bool:
    """Delete ``key`` if its value is still ``token``; return whether it did."""
    return bool(connection.eval(_RELEASE, 1, key, token))


def holder(connection: Redis, style_id: str) -> str | None:
    """Return the token holding the lease of ``style_id``, or None."""
    value = connection.get(KEY_TEMPLATE.format(style_id))
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


class StyleLock:
    """A refreshed lease on one style; use :meth:`acquire` then :meth:`release`."""

    def __init__(self, connection: Redis, style_id: str, token: str, ttl_s: float) -> None:
        """Prepare a lease of ``ttl_s`` seconds on ``style_id`` held as ``token``."""
        self.connection, self.style_id, self.token = connection, style_id, token
        self.key = KEY_TEMPLATE.format(style_id)
        self.ttl_ms = int(ttl_s * 1000)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, wait_s: float, *, poll_s: float = 0.5) -> bool:
        """Take the lease, waiting up to ``wait_s`` for another holder's to end.

        Re-taking a lease this token already holds succeeds (a retried job on the same
        worker). On success a daemon thread keeps refreshing the lease.
        """
        deadline = time.monotonic() + wait_s
        while True:
            if self.connection.set(self.key, self.token, nx=True, px=self.ttl_ms) or (
                holder(self.connection, self.style_id) == self.token
                and self.connection.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms)
            ):
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        self._thread = threading.Thread(target=self._refresh, name="style-lock", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        interval = self.ttl_ms / 3000
        while not self._stop.wait(interval):
            try:
                if self.connection.eval(_REFRESH, 1, self.key, self.token, self.ttl_ms):
                    continue
                # Expired (Redis was down longer than the TTL, or restarted without the
                # key): nobody else trains, so take it again. Only another holder's
                # token means another job took over.
                if self.connection.set(self.key, self.token, nx=True, px=self.ttl_ms):
                    log.warning("training lock of %s had expired; taken again", self.style_id)
                    continue
                log.error("training lock of %s was taken by another job", self.style_id)
                self.lost.set()
                return
            except Exception:  # a Redis blip: try again at the next tick
                log.warning("could not refresh training lock of %s", self.style_id, exc_info=True)

    def release(self) -> None:
        """Stop refreshing and release the lease (if still held)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            release(self.connection, self.style_id, self.token)
        except Exception:  # it expires by itself
            log.warning("could not release training lock of %s", self.style_id, exc_info=True)
