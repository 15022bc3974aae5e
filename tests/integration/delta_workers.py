"""Process targets of ``test_model_store_delta_races.py``: importing only ``model_store`` (not
torch), so each spawned publisher starts in well under a second."""

from __future__ import annotations

from model_store import open_store


def publish_child(store_url: str, scratch: str, sid: str, data: bytes, init: dict) -> None:
    """Publish ``data`` as ``sid``, started from ``init`` (a style of the same store)."""
    open_store(store_url, scratch_root=scratch).publish(sid, data, metrics={"init": init})
