"""Ordering, filtering and opaque cursors of ``ModelStore.list_styles``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from datetime import datetime

from model_store.errors import InvalidCursor
from model_store.records import Page, Status, StyleRecord

StatusFilter = Status | str | Iterable[Status | str] | None


def paginate(
    records: Iterable[StyleRecord], *, status: StatusFilter, limit: int, cursor: str | None
) -> Page:
    """Return one page of ``records``, newest first (``created_at`` desc, then id desc).

    The cursor encodes the sort key of the last item returned, so a page boundary stays
    put when styles are created or deleted between requests.

    Raises:
        ValueError: ``limit`` outside 1..1000 or an unknown status.
        InvalidCursor: ``cursor`` was not issued here.
    """
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be within 1..1000")
    if status is None:
        wanted = None
    elif isinstance(status, str):
        wanted = {Status(status)}
    else:
        wanted = {Status(s) for s in status}
    after = decode_cursor(cursor) if cursor is not None else None
    kept = [
        r
        for r in records
        if (wanted is None or r.status in wanted)
        and (after is None or (r.created_at, r.id) < after)
    ]
    kept.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    items = tuple(kept[:limit])
    return Page(items, encode_cursor(items[-1]) if len(kept) > limit else None)


def encode_cursor(rec: StyleRecord) -> str:
    """Return an opaque cursor pointing just after ``rec``."""
    raw = json.dumps([rec.created_at.isoformat(), rec.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return the ``(created_at, id)`` sort key a cursor encodes.

    Raises:
        InvalidCursor: not a cursor from :func:`encode_cursor`.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, sid = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(sid, str):
            raise ValueError("bad cursor fields")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise InvalidCursor(cursor) from exc
    return when, sid
