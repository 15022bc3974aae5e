"""``GET /styles/{id}/events``: follow a style's training with Server-Sent Events.

The store has no change feed, so the stream polls the record (in a thread, every
``events_poll_s``) and sends an event whenever its revision changes: many clients
following one style cost one manifest read each per poll, not a tight client loop.
Events: ``style`` (the full style document, ``id:`` = revision), then, at the end,
``end`` (the style reached ready, failed or canceled), ``deleted`` or ``timeout``
(the stream's ``events_max_s`` ran out; reconnect). Comment lines keep idle
connections alive through proxies.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from model_store import ModelStore, ModelStoreError, Status, StyleNotFound, StyleRecord
from service.deps import SettingsDep, StoreDep
from service.schemas import ErrorOut, StyleOut

router = APIRouter(tags=["styles"])

TERMINAL = frozenset({Status.READY, Status.FAILED, Status.CANCELED})
KEEPALIVE_S = 15.0


def _event(name: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


async def style_events(
    store: ModelStore, first: StyleRecord, *, poll_s: float, max_s: float
) -> AsyncIterator[str]:
    """Yield SSE frames for ``first`` and its successors until a terminal state."""
    started = last_sent = time.monotonic()
    yield f"retry: {int(max(1.0, poll_s) * 1000)}\n\n"
    rec, last_revision = first, None
    while True:
        now = time.monotonic()
        if rec.revision != last_revision:
            last_revision, last_sent = rec.revision, now
            yield _event("style", StyleOut.from_record(rec).model_dump(mode="json"), rec.revision)
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


@router.get(
    "/styles/{style_id}/events",
    response_class=StreamingResponse,
    summary="Follow a style's status and progress (Server-Sent Events)",
    responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": ErrorOut}},
)
async def follow_style(style_id: str, store: StoreDep, settings: SettingsDep) -> StreamingResponse:
    """Stream ``style`` events until the style is ready, failed, canceled or deleted."""
    first = await anyio.to_thread.run_sync(store.get, style_id)  # 404 before streaming
    return StreamingResponse(
        style_events(store, first, poll_s=settings.events_poll_s, max_s=settings.events_max_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
