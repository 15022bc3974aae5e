"""Blended styles in the runtime: ``style=a:0.7,b:0.3`` → one cached generator.

A blend resolves to a :class:`BlendKey`: the exact weights (each style's current
version, by :class:`~service.runtime.resolver.ModelKey`) and the normalized weights
rounded as :func:`stylenet.blend.parse_blend` rounds them. The generator cache holds a
blend under that key like any style's generator, so a repeated blend is not rebuilt; a
new version of one of its styles makes a new key (the old entry ages out of the LRU).
Building one (:func:`build_blend`, in anyio's thread pool) reads each style's verified
weights and averages them (:func:`stylenet.blend.blend_generator_bytes`), following
style→style starts through the store to find their shared base. A refusal (no shared
base, other structures) is remembered per key: the weights it concerns never change.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import torch

from model_store import ModelStore, ModelStoreError
from service.runtime.executor import DeviceExecutor
from service.runtime.generators import LoadedGenerator, load_on_device
from service.runtime.resolver import ModelKey, ServeTarget, StyleResolver
from stylenet.blend import (
    BlendSpecError,
    StylesIncompatible,
    blend_generator_bytes,
    format_blend,
    parse_blend,
)

log = logging.getLogger(__name__)

#: Refused blends remembered (keys are immutable weights; beyond this the memo restarts).
_REFUSALS_KEPT = 1024


@dataclass(frozen=True)
class BlendKey:
    """Identifies one blended generator: ``(weights of a style version, weight)`` pairs."""

    parts: tuple[tuple[ModelKey, float], ...]

    def mentions(self, style_id: str) -> bool:
        """Whether one of the blend's styles is ``style_id``."""
        return any(key.style_id == style_id for key, _ in self.parts)


@dataclass(frozen=True)
class BlendTarget:
    """A resolved blend: what serves it and how the response names it."""

    key: BlendKey
    spec: str

    @property
    def style_id(self) -> str:
        """The canonical spec (``a:0.7,b:0.3``): the ``X-Style-Id`` of the answer."""
        return self.spec

    @property
    def version(self) -> str:
        """Each style's version, in the spec's order (``3,1``)."""
        return ",".join(str(key.version) for key, _ in self.key.parts)


def mentions(key: Hashable, style_id: str) -> bool:
    """Whether a cache key serves ``style_id``: its own weights or a blend of them."""
    if isinstance(key, ModelKey):
        return key.style_id == style_id
    return isinstance(key, BlendKey) and key.mentions(style_id)


async def resolve(
    styles: StyleResolver, spec: str, version: int | None = None
) -> ServeTarget | BlendTarget:
    """Resolve a ``style`` field: one style id (at ``version``) or a blend spec.

    Raises:
        stylenet.blend.BlendSpecError: a malformed spec, or ``version`` with a blend.
        model_store.StyleNotFound: one of the styles does not exist (the first named).
        StyleNotReady: one of them has nothing published yet.
    """
    parts = parse_blend(spec)
    if len(parts) == 1:
        return await styles.resolve(parts[0].style, version)
    if version is not None:
        raise BlendSpecError("version pins one style; a blend uses each style's current version")
    targets = [await styles.resolve(part.style) for part in parts]
    key = BlendKey(tuple((t.key, p.weight) for t, p in zip(targets, parts, strict=True)))
    return BlendTarget(key, format_blend(parts))


class BlendBuilder:
    """Builds blended generator files from the store (and remembers refusals)."""

    def __init__(self, store: ModelStore) -> None:
        """Read weights and records from ``store``."""
        self._store = store
        self._refused: dict[BlendKey, StylesIncompatible] = {}

    async def build(self, key: BlendKey) -> bytes:
        """Return the blended generator file of ``key`` (float32 generator bytes).

        Raises:
            StylesIncompatible: the styles share no base, or differ in structure.
            model_store errors: a style's weights cannot be read (deleted, corrupt).
        """
        refused = self._refused.get(key)
        if refused is not None:
            raise refused
        try:
            return await anyio.to_thread.run_sync(self._build, key)
        except StylesIncompatible as exc:
            if len(self._refused) >= _REFUSALS_KEPT:
                self._refused.clear()
            self._refused[key] = exc
            raise

    async def load(
        self, key: BlendKey, executor: DeviceExecutor, device: torch.device, slack: float
    ) -> LoadedGenerator:
        """Build the blend of ``key`` and load it on ``device`` (the device thread).

        ``slack``: the host's RSS per traced byte of a CPU forward (its memory price).
        """
        data = await self.build(key)
        return await executor.run(load_on_device, key, data, device, slack=slack)

    def _build(self, key: BlendKey) -> bytes:
        files = [
            (model.style_id, self._store.open_weights(model.style_id, model.version))
            for model, _ in key.parts
        ]
        weights = [weight for _, weight in key.parts]
        return blend_generator_bytes(files, weights, lookup=self._lookup)

    def _lookup(self, style_id: str, version: int) -> tuple[str, Mapping[str, Any] | None] | None:
        """Return a style version's ``(sha256, init)``, to follow style→style starts."""
        try:
            info = self._store.get(style_id).version_info(version)
        except ModelStoreError:
            return None  # deleted since: the chain stops at the recorded digest
        if info is None:
            return None
        init = info.metrics.get("init")
        return info.sha256, init if isinstance(init, Mapping) else None


__all__ = ["BlendBuilder", "BlendKey", "BlendTarget", "mentions", "resolve"]
