"""Versions stored as deltas, on each backend and across processes (issue 27 item 3):
deletes of a parent racing publishes of its children never strand a child."""

from __future__ import annotations

import hashlib
import multiprocessing
import time

import pytest
import torch
from blend_testing import family_member
from delta_workers import publish_child

from model_store import HasDependents, ModelStore
from stylenet import generator_to_bytes
from stylenet.generators import build_generator

CHILDREN = 4
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
#: Real processes, as the store's other concurrency tests use.
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(scope="module")
def parent_bytes() -> bytes:
    torch.manual_seed(5)
    return generator_to_bytes(build_generator(width=0.125), dtype="float16")


def _start(parent: bytes) -> dict:
    sha = hashlib.sha256(parent).hexdigest()
    return {"kind": "style", "style_id": "p", "version": 1, "sha256": sha}


def test_a_delta_round_trips_and_guards_its_parent(store: ModelStore, parent_bytes: bytes):
    store.create(PNG, name="Parent", style_id="p")
    store.publish("p", parent_bytes)
    child = family_member(parent_bytes, 1, _start(parent_bytes))
    store.create(PNG, name="Child", style_id="c")
    store.publish("c", child, metrics={"init": _start(parent_bytes)})
    assert store.get("c").version_info().stored_size < len(child) / 5
    store.gc(min_age_s=0)  # the delta and the parent's file are referenced: kept
    assert store.open_weights("c") == child
    with pytest.raises(HasDependents):
        store.delete("p")
    store.delete("c")
    store.delete("p")


def test_children_published_at_once_all_hold_their_parent_against_deletes(
    store: ModelStore, store_url: str, scratch_root, parent_bytes: bytes
):
    store.create(PNG, name="Parent", style_id="p")
    store.publish("p", parent_bytes)
    init = _start(parent_bytes)
    children = {f"c{i}": family_member(parent_bytes, 10 + i, init) for i in range(CHILDREN)}
    for sid in children:
        store.create(PNG, name=sid, style_id=sid)
    procs = [
        SPAWN.Process(target=publish_child, args=(store_url, str(scratch_root), sid, data, init))
        for sid, data in children.items()
    ]
    for proc in procs:
        proc.start()
    refused = 0
    # Deletes race the publishes from the first mark on: none may get through, and no
    # publisher's mark may be lost to another's (each is a compare-and-swap of p).
    while any(proc.is_alive() for proc in procs):
        if store.get("p").dependents:
            with pytest.raises(HasDependents):
                store.delete("p")
            refused += 1
        time.sleep(0.01)  # leave the two cores to the publishers
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    for sid, data in children.items():
        assert store.get(sid).version_info().delta is not None
        assert store.open_weights(sid) == data
    assert store.dependents("p") == sorted(children)
    with pytest.raises(HasDependents):
        store.delete("p")
    print(f"deletes refused while the children published: {refused}")
