"""What a worker keeps in Redis about itself, put back when Redis lost its data.

Redis may lose everything (``FLUSHALL``, a restart without persistence, a failover to an
empty replica) while a worker runs. RQ writes the worker's registration once, at birth:
its hash ``rq:worker:<name>`` and its membership of ``rq:workers`` and
``rq:workers:<queue>``. Its heartbeats only refresh the hash (re-creating a bare one), so
after a data loss ``Worker.count(queue)`` stays 0 until the worker restarts, and the API's
``/readyz`` said ``no_training_worker`` for the 33 minutes a training went on. The
training speed the worker published at start (``stylize:train-speed``) is gone too, and
the API's estimates stay null.

:class:`Presence` is checked on every heartbeat of the worker's main process, idle or
running a job (one round trip: three membership tests and a read), and writes back what
is missing: the registration (hash, sets, TTL) and the last speed it saw published for
its device (it follows the refinements the jobs publish after each run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError
from rq import worker_registration
from rq.exceptions import StopRequested

from stylenet.cost import SPEED_KEY

from .speed import field_name

if TYPE_CHECKING:
    from rq import Worker

log = logging.getLogger(__name__)


class Presence:
    """Keeps ``worker``'s RQ registration and its device's speed in Redis.

    Args:
        worker: the RQ worker (registered: :meth:`restore` is for after its birth).
        device: ``STYLIZE_DEVICE``, which names the speed's hash field.
    """

    def __init__(self, worker: Worker, device: str) -> None:
        """Bind to a worker; nothing is read until :meth:`restore`."""
        self.worker = worker
        self.speed_field = field_name(device)
        self._speed: bytes | None = None  # the last value seen in Redis

    def _membership_keys(self) -> list[str]:
        queues = [worker_registration.WORKERS_BY_QUEUE_KEY % q for q in self.worker.queue_names()]
        return [worker_registration.REDIS_WORKER_KEYS, *queues]

    def restore_safely(self) -> None:
        """:meth:`restore`, logging (not raising) a failure: the next heartbeat tries again."""
        if self.worker.birth_date is None:
            return  # not registered yet: RQ's birth writes it all
        try:
            self.restore()
        except StopRequested:  # SIGTERM while idle: RQ's way out of its loop
            raise
        except RedisError as exc:
            log.warning("Redis unavailable (presence check): %s; going on", exc)
        except Exception:
            log.exception("could not check this worker's presence in Redis")

    def restore(self) -> list[str]:
        """Put back what Redis lost; return what was put back (``registration``, ``speed``).

        Raises:
            redis.RedisError: Redis failed (the caller logs it and tries next time).
        """
        connection: Redis = self.worker.connection
        key = self.worker.key
        memberships = self._membership_keys()
        with connection.pipeline(transaction=False) as pipe:
            pipe.hexists(key, "birth")
            for members in memberships:
                pipe.sismember(members, key)
            pipe.hget(SPEED_KEY, self.speed_field)
            *registered, speed = pipe.execute()
        restored = []
        if not all(registered):
            self._register()
            restored.append("registration")
        if speed is not None:
            self._speed = speed
        elif self._speed is not None:
            connection.hset(SPEED_KEY, self.speed_field, self._speed)
            restored.append("speed")
        if restored:
            log.warning("Redis had lost this worker's %s; written again", " and ".join(restored))
        return restored

    def _register(self) -> None:
        """RQ's ``register_birth`` without its "a worker of this name exists" refusal."""
        worker = self.worker
        state = worker.get_state()
        fields = {**worker.serialize(), "state": getattr(state, "value", state)}
        with worker.connection.pipeline() as pipe:
            pipe.hset(worker.key, mapping=fields)
            worker_registration.register(worker, pipe)
            pipe.expire(worker.key, worker.worker_ttl + 60)
            pipe.execute()
