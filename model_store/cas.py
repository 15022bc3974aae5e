"""The read-modify-write loop over a manifest compare-and-swap."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from model_store.backend import Backend, ManifestChanged
from model_store.errors import Conflict, StyleNotFound
from model_store.records import StyleRecord, bump, record_from_json, record_to_json


def mutate(
    backend: Backend,
    style_id: str,
    change: Callable[[StyleRecord], StyleRecord],
    *,
    max_attempts: int,
) -> StyleRecord:
    """Apply ``change`` to the current record and write it back if nobody wrote between.

    ``change`` is re-run on the fresh record after every lost race, so it must be a pure
    function of its argument; it may raise to abort (e.g. :class:`InvalidTransition`).
    Returns the record as committed (the current one unchanged if ``change`` was a no-op).

    Raises:
        StyleNotFound: the style does not exist (or was deleted meanwhile).
        Conflict: ``max_attempts`` races lost in a row.
    """
    for attempt in range(max_attempts):
        got = backend.read_manifest(style_id)
        if got is None:
            raise StyleNotFound(style_id)
        cur = record_from_json(style_id, got[0])
        new = change(cur)
        if new == cur:
            return cur
        new = bump(new, cur)
        try:
            backend.write_manifest(style_id, record_to_json(new), got[1])
        except ManifestChanged:
            backoff(attempt)
            continue
        return new
    raise Conflict(style_id, max_attempts)


def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt``: full jitter, exponential, capped at 0.1 s."""
    # Jitter spreads contenders out instead of letting them collide again in lockstep.
    time.sleep(random.uniform(0, min(0.1, 0.001 * 2**attempt)))
