"""A store holding a family of styles fine-tuned from one base, for the blend tests.

The base is a real (tiny, trained) generator; each style is the base with its own
instance-norm γ/β (what ``norm_first_steps >= iterations`` trains), published as the
worker publishes (float16 weights, ``metrics.init`` naming the base's sha256). One
style starts from another style (a chain), one was trained from scratch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from model_store import open_store
from stylenet import build_generator, generator_to_bytes, load_generator
from stylenet.multistyle import norm_parameter_names

#: Styles adapted from the base (γ/β only).
FAMILY = ("a", "b", "c")
#: Started from style ``a`` (kind ``style``), γ/β only too.
CHILD = "child"
#: Trained from scratch: shares nothing with the family.
LONE = "lone"


def family_member(base: bytes, seed: int, init: dict) -> bytes:
    """Return a generator file: ``base`` with seeded new γ/β, float16 as the worker saves."""
    model, info = load_generator(base)
    names = set(norm_parameter_names(model))
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in names:
                param.add_(0.5 * torch.randn(param.shape, generator=noise))
    return generator_to_bytes(
        model,
        train_params=info.train_params,
        lossnet=info.lossnet,
        metrics={"init": init},
        dtype="float16",
    )


def build_family_store(root: Path, base: bytes, style_png: bytes) -> tuple[str, dict[str, bytes]]:
    """Create a file store with the family; return its URL and each style's weights."""
    url = (root / "models").as_uri()
    store = open_store(url)
    base_init = {"kind": "base", "sha256": hashlib.sha256(base).hexdigest(), "name": "tiny"}
    weights = {sid: family_member(base, 10 + i, base_init) for i, sid in enumerate(FAMILY)}
    parent_sha = hashlib.sha256(weights["a"]).hexdigest()
    child_init = {"kind": "style", "sha256": parent_sha, "style_id": "a", "version": 1}
    weights[CHILD] = family_member(weights["a"], 99, child_init)
    torch.manual_seed(7)
    lone = build_generator(load_generator(base)[1].config)
    weights[LONE] = generator_to_bytes(lone, metrics={"init": {"kind": "scratch"}}, dtype="float16")
    for sid, data in weights.items():
        store.create(style_png, name=f"style {sid}", style_id=sid)
        metrics = load_generator(data)[1].metrics
        # As a γ/β-only adaptation records its run (the scratch one trained everything).
        steps = {"iterations": 300, "norm_first_steps": 0 if sid == LONE else 300}
        store.publish(sid, data, metadata={"train_params": steps}, metrics=metrics)
    return url, weights


@pytest.fixture(scope="module")
def family(
    tmp_path_factory: pytest.TempPathFactory, tiny_generator_bytes: bytes, style_png: bytes
) -> tuple[str, dict[str, bytes]]:
    """The family's store (URL) and weights, for a module of service tests."""
    return build_family_store(tmp_path_factory.mktemp("family"), tiny_generator_bytes, style_png)


@pytest.fixture(scope="module")
def store_url(family: tuple[str, dict[str, bytes]]) -> str:
    """The service tests' store: the family's (overrides the standard styles' store)."""
    return family[0]
