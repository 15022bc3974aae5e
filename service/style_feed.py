"""One poll per followed style per process, shared by all its event streams.

The store has no change feed, so ``GET /styles/{id}/events`` learns of changes by reading
the style's record every ``events_poll_s``, and a queued style's place by reading the
queue in Redis every :data:`REPRICE_S`. Each stream doing both on its own cost one store
read and one thread hop per stream per poll, and a look at the queue (a transaction and
the job hashes) per stream every 2 s: 500 streams on one queued style were 1,000 manifest
reads a second (S3 GETs with that backend) and hundreds of Redis commands a second to
learn the same thing. Here the first stream of a style starts one poller; every stream
of that style in the process waits on it, and the poller stops when the last one leaves.
A new stream reads and prices the record once itself (its 404 comes before streaming),
then follows the shared poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from model_store import ModelStore, ModelStoreError, Status, StyleNotFound, StyleRecord
from service.schemas import StyleOut

#: How often a queued style's place is read again (a look at the queue in Redis).
REPRICE_S = 2.0

#: Turns a record into its document with what the queue knows (blocking; in a thread).
Pricer = Callable[[StyleRecord], StyleOut]


@dataclass(frozen=True)
class Update:
    """What the shared poll last saw of a style.

    Attributes:
        seq: increases with every change (a new revision or document, the style gone,
            an error).
        record: the newest record (None before the first poll, once gone or unreadable).
        document: its JSON document (priced when the feed has a pricer).
        gone: the style was deleted.
        error: the store failed to answer (the streams end with an ``error`` event).
    """

    seq: int
    record: StyleRecord | None
    document: dict[str, Any] | None = None
    gone: bool = False
    error: str | None = None


async def document_of(rec: StyleRecord, price: Pricer | None) -> dict[str, Any]:
    """Return the document of ``rec``, priced (in a thread) with ``price`` when given."""
    if price is None:
        return StyleOut.from_record(rec).model_dump(mode="json")
    return (await anyio.to_thread.run_sync(price, rec)).model_dump(mode="json")


class _Watch:
    """The poller of one style and the streams waiting on it."""

    def __init__(
        self, store: ModelStore, style_id: str, poll_s: float, price: Pricer | None
    ) -> None:
        self.store = store
        self.style_id = style_id
        self.poll_s = poll_s
        self.price = price
        self.followers = 0
        self.update = Update(0, None)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name=f"stylize-feed-{self.style_id}")

    @property
    def ended(self) -> bool:
        """Whether the poll has stopped (the style gone, or the store failed)."""
        return self._task is not None and self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        revision: int | None = None
        document: dict[str, Any] | None = None
        priced_at = -REPRICE_S
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                record = await anyio.to_thread.run_sync(self.store.get, self.style_id)
            except StyleNotFound:
                await self._publish(Update(self.update.seq + 1, None, gone=True))
                return
            except ModelStoreError as exc:
                await self._publish(Update(self.update.seq + 1, None, error=str(exc)))
                return
            now = time.monotonic()
            queued = record.status is Status.QUEUED and self.price is not None
            if record.revision == revision and not (queued and now - priced_at >= REPRICE_S):
                continue
            # The queue moves without the record changing: the place and times may have.
            priced_at = now
            fresh = await document_of(record, self.price)
            if record.revision != revision or fresh != document:
                revision, document = record.revision, fresh
                await self._publish(Update(self.update.seq + 1, record, fresh))

    async def _publish(self, update: Update) -> None:
        async with self._changed:
            self.update = update
            self._changed.notify_all()

    async def after(self, seq: int, timeout: float) -> Update:
        """Return the first update newer than ``seq``, or the current one after ``timeout``."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self.update.seq > seq)
            return self.update


class StyleFeed:
    """The shared polls of this process's event streams, one per followed style."""

    def __init__(self, store: ModelStore, poll_s: float, price: Pricer | None = None) -> None:
        """Poll ``store`` every ``poll_s`` for each followed style; price with ``price``."""
        self.store = store
        self.poll_s = poll_s
        self.price = price
        self._watches: dict[str, _Watch] = {}

    @property
    def polling(self) -> int:
        """Styles polled now (one poller each)."""
        return len(self._watches)

    @contextlib.asynccontextmanager
    async def follow(self, style_id: str) -> AsyncIterator[_Watch]:
        """Share the poll of ``style_id`` for the block (started by the first follower)."""
        watch = self._watches.get(style_id)
        if watch is None or watch.ended:
            # An ended poll's followers are on their way out: a new stream (whose own read
            # found the style) gets a poll of its own.
            watch = _Watch(self.store, style_id, self.poll_s, self.price)
            self._watches[style_id] = watch
            watch.start()
        watch.followers += 1
        try:
            yield watch
        finally:
            watch.followers -= 1
            if not watch.followers:
                if self._watches.get(style_id) is watch:
                    del self._watches[style_id]
                await watch.stop()


__all__ = ["REPRICE_S", "StyleFeed", "Update", "document_of"]
