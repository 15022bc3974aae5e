"""The model store contract: listing styles newest first, by pages, by status. Every test
runs on each backend (``store_url``, ``file://`` and ``s3://`` through a moto server
process; see conftest.py)."""

from __future__ import annotations

import pytest
from store_testing import PNG

from model_store import (
    InvalidCursor,
    ModelStore,
    Status,
)


def test_list_newest_first_with_pagination_and_filter(store: ModelStore) -> None:
    ids = [store.create(PNG, name=f"s{i}").id for i in range(7)]
    store.update(ids[1], status="training")
    store.update(ids[4], status="training")
    expected = list(reversed(ids))

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_styles(limit=3, cursor=cursor)
        seen.extend(r.id for r in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3

    training = store.list_styles(status=Status.TRAINING)
    assert [r.id for r in training.items] == [ids[4], ids[1]]
    assert training.next_cursor is None
    queued = store.list_styles(status=["queued"], limit=100)
    assert len(queued.items) == 5
    assert store.list_styles(status="ready").items == ()
    with pytest.raises(InvalidCursor):
        store.list_styles(cursor="garbage!")
