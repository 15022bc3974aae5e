"""``GET /styles/{id}/events``: follow a style's training with Server-Sent Events.

The store has no change feed, so the stream polls the record (in a thread, every
``events_poll_s``) and sends an event whenever its revision changes: many clients
following one style cost one manifest read each per poll, not a tight client loop.
Events: ``style`` (the full style document, ``id:`` = revision; a queued style's
document, with its ``queue`` place and times, is sent again whenever those change,
re-read every ``REPRICE_S``, though its record did not), then, at the end,
``end`` (the style reached ready, failed or canceled), ``deleted`` or ``timeout``
(the stream's ``events_max_s`` ran out; reconnect). Comment lines keep idle
connections alive through proxies.

Each stream holds a slot of :class:`service.streams.StreamLimiter` for its whole life:
one key (or address) holds ``streams_per_client`` at most (429 ``too_many_streams``), one
process ``effective_max_streams`` (503 ``streams_full``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from model_store import ModelStore, ModelStoreError, Status, StyleNotFound, StyleRecord
from service.auth import client_id, identify
from service.deps import SettingsDep, StoreDep, StreamsDep, TrainingDep
from service.pricing import priced_one
from service.schemas import ErrorOut, StyleOut

router = APIRouter(tags=["styles"])

TERMINAL = frozenset({Status.READY, Status.FAILED, Status.CANCELED})
KEEPALIVE_S = 15.0
#: How often a queued style's place is read again (a look at the queue in Redis).
REPRICE_S = 2.0


def _event(name: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


async def style_events(
    store: ModelStore,
    first: StyleRecord,
    *,
    poll_s: float,
    max_s: float,
    price: Callable[[StyleRecord], StyleOut] | None = None,
) -> AsyncIterator[str]:
    """Yield SSE frames for ``first`` and its successors until a terminal state.

    ``price`` (blocking; run in a thread) turns a record into its document with what the
    queue knows (:func:`service.pricing.priced_one`); without it the record's own.
    """
    started = last_sent = time.monotonic()
    yield f"retry: {int(max(1.0, poll_s) * 1000)}\n\n"
    rec, last_revision, last_doc, priced_at = first, None, None, -REPRICE_S

    async def document(rec: StyleRecord) -> dict[str, Any]:
        if price is None:
            return StyleOut.from_record(rec).model_dump(mode="json")
        return (await anyio.to_thread.run_sync(price, rec)).model_dump(mode="json")

    while True:
        now = time.monotonic()
        doc = None
        if rec.revision != last_revision:
            doc = await document(rec)
        elif rec.status is Status.QUEUED and price is not None and now - priced_at >= REPRICE_S:
            # The queue moves without the record changing: the place and times may have.
            priced_at = now
            candidate = await document(rec)
            doc = candidate if candidate != last_doc else None
        if doc is not None:
            last_revision, last_doc, last_sent = rec.revision, doc, now
            yield _event("style", doc, rec.revision)
            if rec.status in TERMINAL:
                yield _event("end", {"id": rec.id, "status": rec.status.value})
                return
        elif now - last_sent >= KEEPALIVE_S:
            last_sent = now
            yield ": keep-alive\n\n"
        if now - started >= max_s:
            yield _event("timeout", {"id": rec.id})
            return
        await anyio.sleep(poll_s)
        try:
            rec = await anyio.to_thread.run_sync(store.get, rec.id)
        except StyleNotFound:
            yield _event("deleted", {"id": rec.id})
            return
        except ModelStoreError as exc:
            yield _event("error", {"id": rec.id, "message": str(exc)})
            return


class SlottedStream(StreamingResponse):
    """A streaming response that holds ``slot`` from before its first byte to its end.

    Taken in the response rather than the route so that one ``async with`` covers the
    stream however it ends (finished, client gone, server stopping); a refusal raised
    there, before anything is sent, goes through the error handlers like any other.
    """

    def __init__(self, slot: AbstractAsyncContextManager[None], *args: Any, **kwargs: Any) -> None:
        """``slot``: entered when the response starts; the rest is StreamingResponse's."""
        super().__init__(*args, **kwargs)
        self._slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the stream inside the slot."""
        async with self._slot:
            await super().__call__(scope, receive, send)


@router.get(
    "/styles/{style_id}/events",
    response_class=StreamingResponse,
    summary="Follow a style's status and progress (Server-Sent Events)",
    responses={
        200: {"content": {"text/event-stream": {}}},
        404: {"model": ErrorOut},
        429: {
            "model": ErrorOut,
            "description": "too_many_streams: this key (or address, without a key) holds "
            "STYLIZE_STREAMS_PER_CLIENT streams; see Retry-After",
        },
        503: {
            "model": ErrorOut,
            "description": "streams_full: the server holds as many streams as it keeps open",
        },
    },
)
async def follow_style(
    style_id: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    streams: StreamsDep,
    training: TrainingDep,
) -> StreamingResponse:
    """Stream ``style`` events until the style is ready, failed, canceled or deleted.

    A key is not needed; one sent counts the stream against the key instead of the address.
    """
    first = await anyio.to_thread.run_sync(store.get, style_id)  # 404 before streaming
    client = client_id(request, identify(settings, request.headers.get("authorization")))
    return SlottedStream(
        streams.slot(client),
        style_events(
            store,
            first,
            poll_s=settings.events_poll_s,
            max_s=settings.events_max_s,
            price=lambda rec: priced_one(rec, training, store),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
