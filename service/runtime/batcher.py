"""Dynamic batching with a bounded queue, fast rejection and cancel-safe slots.

Requests are grouped by a key (for stylization: model and image height/width, so
different shapes are never stacked). One dispatcher task hands batches to the runner
one at a time: while the device works, newcomers queue up and form the next batch, so
batches grow with load by themselves; ``batch_timeout`` only delays the first request
of a batch when the device is idle, hoping for company.

Slots: a request holds a queue slot from :meth:`Batcher.submit` until its batch is
handed to the device (or it is rejected, times out, or is cancelled). When all
``queue_size`` slots are taken, ``submit`` raises :class:`~service.errors.Overloaded`
at once, with a ``retry_after`` estimated from recent batch times: requests never pile
up until they time out. A request whose caller is cancelled (client gone, timeout)
leaves the queue immediately; one whose deadline passes while queued is failed with
:class:`~service.errors.RequestTimeout` and never runs.

Fairness between clients (API keys, or addresses): each request names its client, and
one client's flood must not starve another's requests.

* **Order of service**: the next batch goes to the client served longest ago (one never
  served first) among those with a request ready, starting from that client's oldest
  ready request; a batch is filled from its group round-robin across clients. So a
  client that sends one request among another's hundreds waits for the batch on the
  device and at most one more per other waiting client, never for the whole backlog.
* **Queue slots**: when the queue is full, a request of a client holding at least two
  slots fewer than the client holding most pushes that client's newest request out (429
  ``fair_share``); otherwise the newcomer is refused (429). Shares even out, and a light
  client always gets in.

With one client (or none named) the order is exactly oldest-first, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.errors import Overloaded, RequestTimeout
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)
P = TypeVar("P")
R = TypeVar("R")

Runner = Callable[[Hashable, Sequence[Any]], Awaitable[Sequence[Any]]]
"""``runner(key, payloads)`` returns one result per payload, in order."""


@dataclass(frozen=True)
class Batched(Generic[R]):
    """The result of one request, with how it was served.

    Attributes:
        value: what the runner returned for this request.
        batch_size: how many requests shared the forward pass.
        queue_wait_s: from submission to the batch starting.
        run_s: the batch's run time on the device.
    """

    value: R
    batch_size: int
    queue_wait_s: float
    run_s: float


@dataclass(eq=False)
class _Pending:
    key: Hashable
    # repr=False: payloads hold images and models, whose reprs cost milliseconds.
    payload: Any = field(repr=False)
    submitted: float
    deadline: float
    future: asyncio.Future[Batched[Any]] = field(repr=False)
    #: Whom the request counts against (a key id or an address; "": nobody named).
    client: str = ""
    #: In its group's queue (False once handed to the runner or withdrawn).
    queued: bool = True


class Batcher:
    """Groups submissions by key into batches run by ``runner``, one batch at a time."""

    #: Clients whose last turn is remembered (beyond, the longest-served-ago are
    #: forgotten: such a client counts as never served, which only moves it forward).
    remembered_clients = 4096

    def __init__(
        self,
        runner: Runner,
        *,
        max_batch_size: int,
        batch_timeout_s: float,
        queue_size: int,
        metrics: ServiceMetrics,
    ) -> None:
        """Create a stopped batcher; call :meth:`start` inside the event loop."""
        self._runner = runner
        self.max_batch_size = max_batch_size
        self.batch_timeout_s = batch_timeout_s
        self.queue_size = queue_size
        self._metrics = metrics
        self._groups: dict[Hashable, deque[_Pending]] = {}
        #: Each client's queued requests, oldest first.
        self._clients: dict[str, deque[_Pending]] = {}
        #: Client -> the turn of its last batch (higher: served more recently).
        self._served: OrderedDict[str, int] = OrderedDict()
        self._turn = 0
        self._depth = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batch_s_ewma: float | None = None
        #: Requests handed to the runner so far (tests and diagnostics).
        self.dispatched = 0

    # --- public ---------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Requests holding a queue slot (submitted, not yet handed to the device)."""
        return self._depth

    @property
    def full(self) -> bool:
        """Whether a submission now would be rejected."""
        return self._depth >= self.queue_size

    @property
    def running(self) -> bool:
        """Whether the dispatcher task is alive."""
        return self._task is not None and not self._task.done()

    def retry_after(self) -> float:
        """Seconds after which a rejected client may reasonably retry (at least 1)."""
        per_batch = self._batch_s_ewma or 1.0
        return max(1.0, math.ceil(per_batch * (self._depth / self.max_batch_size + 1)))

    def check_capacity(self, client: str = "") -> None:
        """Raise :class:`Overloaded` now if ``client`` would be refused (before costly work)."""
        if self.full and self._victim(client) is None:
            self._metrics.rejected.labels(reason="queue_full").inc()
            raise Overloaded(
                f"the stylize queue is full ({self.queue_size} waiting); retry later",
                retry_after=self.retry_after(),
            )

    async def submit(
        self, key: Hashable, payload: Any, deadline: float, *, client: str = ""
    ) -> Batched[Any]:
        """Queue ``payload`` under ``key`` and wait for its result.

        Args:
            key: requests with equal keys may share a batch.
            payload: handed to the runner.
            deadline: ``time.monotonic()`` value after which the request is dropped.
            client: whom the request counts against, for fairness (module docstring).

        Raises:
            Overloaded: the queue is full (nothing was queued), or this request was
                pushed out by another client's (code ``fair_share``).
            RequestTimeout: the deadline passed before the request ran.
            Exception: whatever the runner raised for the batch.
        """
        self.check_capacity(client)
        if self.full:
            self._push_out(self._victim(client))
        loop = asyncio.get_running_loop()
        pending = _Pending(key, payload, time.monotonic(), deadline, loop.create_future(), client)
        self._groups.setdefault(key, deque()).append(pending)
        self._clients.setdefault(client, deque()).append(pending)
        self._set_depth(self._depth + 1)
        self._wakeup.set()
        try:
            return await pending.future
        finally:
            # Cancelled or timed out while queued: give the slot back right away.
            self._withdraw(pending)

    def start(self) -> None:
        """Start the dispatcher task."""
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch_forever(), name="stylize-batcher")

    async def stop(self) -> None:
        """Stop dispatching and fail whatever is still queued."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for group in self._groups.values():
            for pending in group:
                pending.queued = False
                if not pending.future.done():
                    pending.future.set_exception(RuntimeError("the service is shutting down"))
        self._groups.clear()
        self._clients.clear()
        self._set_depth(0)

    # --- internals ------------------------------------------------------------------------

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        self._metrics.queue_depth.set(depth)

    def _withdraw(self, pending: _Pending) -> None:
        # The common case, once a request is answered: dispatched, its slot released then.
        # Checked by flag, not by deque.remove raising: its ValueError message holds the
        # repr of the item (an image and a model), measured at a quarter of the event
        # loop's time per request.
        if not pending.queued:
            return
        pending.queued = False
        self._unlink(pending)
        self._set_depth(self._depth - 1)

    def _unlink(self, pending: _Pending) -> None:
        """Remove a request from its group's and its client's queues."""
        for queues, name in ((self._groups, pending.key), (self._clients, pending.client)):
            queue = queues[name]
            queue.remove(pending)
            if not queue:
                del queues[name]

    def _victim(self, client: str) -> _Pending | None:
        """Return the request a newcomer of ``client`` would push out of a full queue."""
        heaviest = max(self._clients.values(), key=len, default=None)
        held = len(self._clients.get(client, ()))
        if heaviest is None or len(heaviest) < held + 2:
            return None
        return heaviest[-1]  # the newest: it has waited least

    def _push_out(self, victim: _Pending | None) -> None:
        assert victim is not None  # check_capacity found one
        self._withdraw(victim)
        self._metrics.rejected.labels(reason="fair_share").inc()
        if not victim.future.done():
            victim.future.set_exception(
                Overloaded(
                    "the stylize queue is full and this client holds more of it than any "
                    "other; retry later",
                    code="fair_share",
                    retry_after=self.retry_after(),
                )
            )

    def _take_ready(self, now: float) -> tuple[Hashable, list[_Pending]] | float | None:
        """Pop the next batch if one is ready; else return when one will be (or None)."""
        ready: set[Hashable] = set()
        next_due: float | None = None
        for key, group in self._groups.items():
            due = group[0].submitted + self.batch_timeout_s
            if len(group) >= self.max_batch_size or due <= now:
                ready.add(key)
            elif next_due is None or due < next_due:
                next_due = due
        if not ready:
            return next_due
        # The client served longest ago, from its oldest ready request (with one client:
        # the oldest head of a ready group, fairness across styles and shapes).
        chosen: tuple[int, str, Hashable] | None = None
        for client, queue in self._clients.items():
            turn = self._served.get(client, -1)
            if chosen is not None and turn >= chosen[0]:
                continue
            first = next((p for p in queue if p.key in ready), None)
            if first is not None:
                chosen = (turn, client, first.key)
        assert chosen is not None  # every queued request is in its client's queue
        _, client, key = chosen
        taken = self._fill(self._groups[key], client)
        for pending in taken:
            pending.queued = False
            self._unlink(pending)
        self._set_depth(self._depth - len(taken))
        for pending in taken:
            self._turn += 1
            self._served[pending.client] = self._turn
            self._served.move_to_end(pending.client)
        while len(self._served) > self.remembered_clients:
            self._served.popitem(last=False)
        return key, taken

    def _fill(self, group: deque[_Pending], first: str) -> list[_Pending]:
        """Pick a batch from ``group``: ``first``'s oldest, then round-robin by client."""
        by_client: dict[str, deque[_Pending]] = {}
        for pending in group:
            by_client.setdefault(pending.client, deque()).append(pending)
        order = sorted(by_client, key=lambda c: (c != first, self._served.get(c, -1)))
        lanes = [by_client[c] for c in order]
        taken: list[_Pending] = []
        while len(taken) < self.max_batch_size and lanes:
            for lane in lanes:
                if len(taken) < self.max_batch_size:
                    taken.append(lane.popleft())
            lanes = [lane for lane in lanes if lane]
        return taken

    async def _next_batch(self) -> tuple[Hashable, list[_Pending]]:
        while True:
            ready = self._take_ready(time.monotonic())
            if isinstance(ready, tuple):
                return ready
            self._wakeup.clear()
            timeout = None if ready is None else max(0.0, ready - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _dispatch_forever(self) -> None:
        while True:
            key, taken = await self._next_batch()
            try:
                await self._run(key, taken)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one batch kill the dispatcher
                log.exception("batch dispatch failed")

    async def _run(self, key: Hashable, taken: list[_Pending]) -> None:
        now = time.monotonic()
        live = []
        for pending in taken:
            if pending.future.done():
                continue
            if pending.deadline <= now:
                self._metrics.rejected.labels(reason="timeout").inc()
                pending.future.set_exception(
                    RequestTimeout("the request timed out while waiting for the device")
                )
                continue
            live.append(pending)
        if not live:
            return
        self.dispatched += len(live)
        self._metrics.batch_size.observe(len(live))
        for pending in live:
            self._metrics.queue_wait.observe(now - pending.submitted)
        started = time.monotonic()
        try:
            results = await self._runner(key, [p.payload for p in live])
        except BaseException as exc:
            # CancelledError too (shutdown): no caller may wait forever.
            error = exc if isinstance(exc, Exception) else RuntimeError("batch cancelled")
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            run_s = time.monotonic() - started
            self._metrics.inference.observe(run_s)
            ewma = self._batch_s_ewma
            self._batch_s_ewma = run_s if ewma is None else 0.8 * ewma + 0.2 * run_s
        for pending, value in zip(live, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(
                    Batched(value, len(live), started - pending.submitted, run_s)
                )
