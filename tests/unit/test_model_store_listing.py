from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from model_store import InvalidCursor, Status, StyleRecord
from model_store.ids import new_incarnation
from model_store.listing import decode_cursor, encode_cursor, paginate
from model_store.records import BlobInfo

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def rec(sid: str, minutes: int, status: Status = Status.QUEUED) -> StyleRecord:
    when = T0 + timedelta(minutes=minutes)
    return StyleRecord(
        id=sid,
        name=sid,
        status=status,
        created_at=when,
        updated_at=when,
        incarnation=new_incarnation(),
        style_image=BlobInfo("style-0123456789abcdef.png", "0" * 64, 1, "image/png"),
    )


RECORDS = [
    rec("a", 1),
    rec("b", 2, Status.READY),
    rec("c", 2),
    rec("d", 3, Status.FAILED),
    rec("e", 0),
]


def ids(records: tuple[StyleRecord, ...]) -> list[str]:
    return [r.id for r in records]


def test_newest_first_with_id_tiebreak() -> None:
    page = paginate(RECORDS, status=None, limit=10, cursor=None)
    assert ids(page.items) == ["d", "c", "b", "a", "e"]
    assert page.next_cursor is None


def test_pages_cover_everything_once() -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = paginate(RECORDS, status=None, limit=2, cursor=cursor)
        seen += ids(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["d", "c", "b", "a", "e"]


def test_cursor_survives_inserts_and_deletes() -> None:
    first = paginate(RECORDS, status=None, limit=2, cursor=None)
    changed = [r for r in RECORDS if r.id != "b"] + [rec("new", 10)]
    second = paginate(changed, status=None, limit=10, cursor=first.next_cursor)
    assert ids(second.items) == ["a", "e"]


def test_status_filter() -> None:
    assert ids(paginate(RECORDS, status="ready", limit=10, cursor=None).items) == ["b"]
    both = paginate(RECORDS, status=[Status.READY, Status.FAILED], limit=10, cursor=None)
    assert ids(both.items) == ["d", "b"]
    with pytest.raises(ValueError):
        paginate(RECORDS, status="sleeping", limit=10, cursor=None)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_bounds(limit: int) -> None:
    with pytest.raises(ValueError):
        paginate(RECORDS, status=None, limit=limit, cursor=None)


def test_cursor_round_trip_and_garbage() -> None:
    assert decode_cursor(encode_cursor(RECORDS[0])) == (RECORDS[0].created_at, "a")
    for bad in ["", "!!!", "bm90IGpzb24", "WzEsMl0", "WyIyMDI1LTAxLTAxIiwgImEiXQ"]:
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)
