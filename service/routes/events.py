"""``GET /styles/{id}/events``: follow a style's training with Server-Sent Events.

The store has no change feed, so the record is polled (in a thread, every
``events_poll_s``) and an event sent whenever its revision changes. The poll is shared:
one per followed style per process, however many streams follow it
(:mod:`service.style_feed`). Events: ``style`` (the full style document, ``id:`` =
revision; a queued style's document, with its ``queue`` place and times, is sent again
whenever those change, re-read every ``REPRICE_S``, though its record did not), then,
at the end,
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
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from model_store import ModelStore, Status, StyleRecord
from service.auth import client_id, identify
from service.deps import SettingsDep, StoreDep, StreamsDep, TrainingDep
from service.pricing import priced_one
from service.schemas import ErrorOut
from service.style_feed import StyleFeed, document_of
from service.training import TrainingQueue

router = APIRouter(tags=["styles"])

TERMINAL = frozenset({Status.READY, Status.FAILED, Status.CANCELED})
KEEPALIVE_S = 15.0


def _event(name: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


async def style_events(
    feed: StyleFeed, first: StyleRecord, *, poll_s: float, max_s: float
) -> AsyncIterator[str]:
    """Yield SSE frames for ``first`` and its successors until a terminal state.

    Changes (a new revision; a queued style's new place) come from ``feed``'s shared
    poll of the style (:mod:`service.style_feed`).
    """
    started = last_sent = time.monotonic()
    yield f"retry: {int(max(1.0, poll_s) * 1000)}\n\n"
    async with feed.follow(first.id) as watch:
        seen = watch.update.seq
        rec: StyleRecord | None = first
        doc: dict[str, Any] | None = await document_of(first, feed.price)
        last_revision, last_doc = None, None
        while True:
            now = time.monotonic()
            if (
                rec is not None
                and doc is not None
                and (rec.revision, doc)
                != (
                    last_revision,
                    last_doc,
                )
            ):
                last_revision, last_doc, last_sent = rec.revision, doc, now
                yield _event("style", doc, rec.revision)
                if rec.status in TERMINAL:
                    yield _event("end", {"id": rec.id, "status": rec.status.value})
                    return
            elif now - last_sent >= KEEPALIVE_S:
                last_sent = now
                yield ": keep-alive\n\n"
            if now - started >= max_s:
                yield _event("timeout", {"id": first.id})
                return
            wait = min(KEEPALIVE_S - (now - last_sent), max_s - (now - started))
            update = await watch.after(seen, max(0.0, wait))
            if update.seq == seen:
                continue  # nothing new: a keep-alive or the end of the stream is due
            seen = update.seq
            if update.gone:
                yield _event("deleted", {"id": first.id})
                return
            if update.error is not None:
                yield _event("error", {"id": first.id, "message": update.error})
                return
            rec, doc = update.record, update.document


def _feed(request: Request, store: ModelStore, training: TrainingQueue) -> StyleFeed:
    """Return the app's :class:`StyleFeed` (made by its first stream; it holds no resources)."""
    feed: StyleFeed | None = getattr(request.app.state, "style_feed", None)
    if feed is None:
        settings = request.app.state.settings
        feed = StyleFeed(
            store, settings.events_poll_s, price=lambda rec: priced_one(rec, training, store)
        )
        request.app.state.style_feed = feed
    return feed


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
            _feed(request, store, training),
            first,
            poll_s=settings.events_poll_s,
            max_s=settings.events_max_s,
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
