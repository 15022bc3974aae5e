"""A style's document with what only the queue knows: its estimate and queue place.

Shared by the styles routes and the event stream, so a queued style reads the same
(``estimated_seconds``, ``queue``) whether it is fetched or followed.
"""

from __future__ import annotations

import logging

from model_store import ModelStore, ModelStoreError, Status, StyleNotFound, StyleRecord
from service.estimate import QueuePlace, estimate_for_record, queue_places
from service.schemas import QueueOut, StyleOut
from service.training import TrainingQueue

log = logging.getLogger(__name__)


def priced(
    records: list[StyleRecord], training: TrainingQueue, store: ModelStore
) -> list[StyleOut]:
    """Return the styles' documents with ``estimated_seconds`` and a queued one's ``queue``.

    The queue is read once (only when a style is queued); a Redis or store failure
    leaves the estimates null rather than failing the request.
    """
    places: dict[str, QueuePlace] = {}
    if any(rec.status is Status.QUEUED for rec in records):
        snapshot = training.snapshot()
        known: dict[str, StyleRecord | None] = {rec.id: rec for rec in records}

        def find(style_id: str) -> StyleRecord | None:
            if style_id not in known:
                try:
                    known[style_id] = store.get(style_id)
                except StyleNotFound:
                    known[style_id] = None
            return known[style_id]

        try:
            places = {} if snapshot is None else queue_places(training.reader, snapshot, find)
        except ModelStoreError as exc:
            log.warning("could not price the training queue: %s", exc)
    outs = []
    for rec in records:
        out = StyleOut.from_record(rec)
        out.estimated_seconds = estimate_for_record(training.reader, rec)
        place = places.get(rec.id) if rec.status is Status.QUEUED else None
        if place is not None:
            out.queue = QueueOut(
                position=place.position,
                starts_in_seconds=place.starts_in_seconds,
                ready_in_seconds=place.ready_in_seconds,
            )
        outs.append(out)
    return outs


def priced_one(rec: StyleRecord, training: TrainingQueue, store: ModelStore) -> StyleOut:
    """:func:`priced` of one style."""
    return priced([rec], training, store)[0]
