"""Chaos against the whole `stylize up` stack: issue #14 items 3 (under the launcher), 4, 5.

Before: losing Redis or the worker stopped the whole stack, API included; a retry after
a worker ``kill -9`` waited 7 minutes for the dead scheduler's lock, and that scheduler
lived on as an orphan; a ``kill -9`` of the launcher left Redis, worker and API running.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from chaos_helpers import CONVERGE_S, Stopwatch, report
from stack_testing import alive, children, create_style, descendants, running_stack
from worker_harness import TINY, wait_for

REPO = Path(__file__).resolve().parents[2]
LONG = {**TINY, "iterations": 24}
#: Fast reconciler passes (production: 30 s, 15 s grace).
FAST = {"STYLIZE_RECONCILE_INTERVAL_S": "2", "STYLIZE_RECONCILE_GRACE_S": "3"}


def _child(launcher: int, marker: str, required: bool = True) -> int | None:
    """The pid of the launcher's direct child whose command line contains ``marker``.

    With ``required=False``, ``None`` when there is none (yet): a child being restarted.
    """
    found = children(launcher, marker)
    if found:
        return found[0]
    if not required:
        return None
    raise AssertionError(f"no child {marker!r} of {launcher}")


def _create(url: str, params: dict) -> str:
    return create_style(url, params, name="chaos", style="scream")


def _style(url: str, style_id: str) -> dict:
    return httpx.get(f"{url}/styles/{style_id}", timeout=10).json()


def _wait_final(url: str, style_id: str, timeout: float = CONVERGE_S) -> dict:
    def final() -> dict | None:
        record = _style(url, style_id)
        return record if record["status"] in ("ready", "failed", "canceled") else None

    return wait_for(final, timeout, f"style {style_id} to settle", poll=0.5)


def _stylize(url: str) -> int:
    with (REPO / "demo_styles/scream/style.jpg").open("rb") as handle:
        return httpx.post(
            f"{url}/stylize",
            files={"image": ("p.jpg", handle, "image/jpeg")},
            data={"style": "starry-night", "max_side": "64"},
            timeout=30,
        ).status_code


def test_item3_stack_keeps_serving_while_redis_is_lost(tmp_path: Path) -> None:
    with running_stack(tmp_path, **FAST) as (url, launcher):
        api = _child(launcher.pid, "-m service")
        redis = _child(launcher.pid, "redis-server")
        os.kill(redis, signal.SIGKILL)
        lost = Stopwatch()
        assert _stylize(url) == 200  # inference needs no Redis
        wait_for(
            lambda: _child(launcher.pid, "redis-server", required=False) not in (None, redis),
            30,
            "a new Redis",
            0.2,
        )

        def healthy() -> bool:
            body = httpx.get(f"{url}/readyz", timeout=10).json()
            return body["degraded"] == []

        wait_for(healthy, CONVERGE_S, "the queue to be back", poll=0.2)
        report("item 3, stack: Redis killed -> restarted, queue usable", lost())
        assert _child(launcher.pid, "-m service") == api  # the API never went down
        style_id = _create(url, {**TINY, "iterations": 2})
        record = _wait_final(url, style_id)
        assert record["status"] == "ready", record
        assert launcher.poll() is None


def test_item4_worker_killed_the_retry_waits_seconds(tmp_path: Path) -> None:
    with running_stack(tmp_path, **FAST) as (url, launcher):
        style_id = _create(url, LONG)
        wait_for(
            lambda: (_style(url, style_id)["progress"] or {}).get("iteration", 0) >= 4,
            CONVERGE_S,
            "training past iteration 4",
            poll=0.2,
        )
        worker = _child(launcher.pid, "-m worker")
        helpers = descendants(worker)  # its scheduler and its work horse
        assert helpers
        os.kill(worker, signal.SIGKILL)
        killed = Stopwatch()

        wait_for(lambda: not alive(helpers), 15, "the dead worker's scheduler and horse")
        report("item 4, worker killed -> its scheduler and horse gone", killed())
        record = _wait_final(url, style_id)
        report("item 4, worker killed -> retried and ready", killed())
        assert record["status"] == "ready", record
        assert record["metrics"]["attempt"] == 2 and record["metrics"]["resumed_from"] >= 4
        assert _child(launcher.pid, "-m worker") != worker  # restarted by the launcher


def test_item5_killed_launcher_leaves_nothing_behind(tmp_path: Path) -> None:
    with running_stack(tmp_path, **FAST) as (_url, launcher):
        stack = descendants(launcher.pid)
        assert len(stack) >= 3  # redis, worker (+ its scheduler), api
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        killed = Stopwatch()
        deadline = time.monotonic() + 30
        while alive(stack) and time.monotonic() < deadline:
            time.sleep(0.2)
        report("item 5, launcher killed -> every child gone", killed())
        assert not alive(stack), sorted(alive(stack))
