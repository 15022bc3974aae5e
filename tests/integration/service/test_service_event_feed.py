"""Event streams share one poll per style per process (#24, service/style_feed.py).

Was: each stream read its style's record every ``events_poll_s`` and looked at the queue
in Redis every 2 s on its own, so N streams on one style cost N times the reads. Checked
by counting the store reads of two queued styles followed at once, one by six streams
and one by a single stream, over the same polls: sharing makes them equal.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from service_testing import PENDING_STYLE, sse_events

MakeClient = Callable[..., AbstractContextManager[TestClient]]


def _follow(client: TestClient, style_id: str) -> list[tuple[str, dict]]:
    with client.stream("GET", f"/styles/{style_id}/events") as r:
        assert r.status_code == 200
        return sse_events("".join(r.iter_text()))  # ends by itself after events_max_s


def test_many_streams_on_a_style_cost_one_poll(
    make_client: MakeClient, style_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"training-{uuid.uuid4().hex[:8]}"  # no worker: the styles stay queued
    with make_client(training_queue=queue, events_poll_s=0.05, events_max_s=2) as client:
        created = client.post(
            "/styles",
            files={"image": ("style.png", style_png, "image/png")},
            data={"name": "followed", "params": json.dumps({"image_size": 64, "width": 0.5})},
        )
        assert created.status_code == 202, created.text
        crowded = created.json()["id"]
        store = client.app.state.store  # type: ignore[attr-defined]
        reads: Counter[str] = Counter()
        real_get = store.get

        def counted(style_id: str, *args: object, **kwargs: object) -> object:
            reads[style_id] += 1
            return real_get(style_id, *args, **kwargs)

        monkeypatch.setattr(store, "get", counted)
        with ThreadPoolExecutor(7) as pool:
            streams = [pool.submit(_follow, client, crowded) for _ in range(6)]
            alone = pool.submit(_follow, client, PENDING_STYLE)
            results = [s.result(timeout=60) for s in [*streams, alone]]
    for events in results:
        assert events[0][0] == "style" and events[-1][0] == "timeout"
    # Each stream reads its style once before streaming (its 404); the polls are shared.
    polls = {style: reads[style] - n for style, n in ((crowded, 6), (PENDING_STYLE, 1))}
    assert polls[PENDING_STYLE] >= 10  # ~40 polls in 2 s at 0.05 s: the window is real
    # Six streams polling on their own read six times as often as one.
    assert polls[crowded] < 2 * polls[PENDING_STYLE], (polls, reads)
