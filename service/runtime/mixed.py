"""One forward pass for requests of different styles that share their convolutions.

Styles adapted from one base with only their instance-norm γ/β trained share every
convolution (:func:`stylenet.multistyle.trunk_digest` equal). The :class:`Mixer`
learns each loaded generator's digest (on the device thread, once, when the cache
loads it) and then:

* **batches them together**: :meth:`Mixer.model_key` gives such generators one batch key
  (their :class:`TrunkKey`), so the batcher groups requests for different styles of one
  family as it groups requests for one style;
* **runs them in one forward**: :meth:`Mixer.batch_generator` hands the device a
  :class:`~stylenet.multistyle.MultiStyle` of the family with each sample's γ/β (a batch
  of one style goes the usual way, on that style's own generator);
* **holds the convolutions once**: each member's model points at the family's tensors
  (same values, to the bit), so a member costs the device its γ/β, a few kilobytes; the
  cache counts it so (``nbytes``), and the family's convolutions are counted once, by the
  member that brought them.

Generators served by ONNX Runtime or a compiled graph, batch-norm generators, and
``STYLIZE_MIXED_BATCHES=false`` keep one style per batch.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from service.runtime.generators import LoadedGenerator
from stylenet.multistyle import MultiStyle, norms_nbytes, style_norms, trunk_digest

log = logging.getLogger(__name__)

#: Runs a function on the device thread (the runtime's executor).
DeviceRun = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class TrunkKey:
    """The batch key of a family of styles that share every convolution."""

    digest: str


@dataclass
class _Member:
    digest: str
    norms: dict[str, torch.Tensor]


class _Bound(nn.Module):
    """A family's network with one batch's per-sample γ/β: what the device runs."""

    def __init__(self, multi: MultiStyle, stacked: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.multi = multi
        self.stacked = stacked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi(x, self.stacked)


class Mixer:
    """Families of styles sharing convolutions: their batch keys and mixed forwards."""

    def __init__(self, *, enabled: bool) -> None:
        """Mix styles when ``enabled`` (``STYLIZE_MIXED_BATCHES``)."""
        self.enabled = enabled
        self._members: weakref.WeakKeyDictionary[LoadedGenerator, _Member] = (
            weakref.WeakKeyDictionary()
        )
        #: Family digest -> its network; dropped with the family's last member.
        self._families: dict[str, MultiStyle] = {}
        self._sizes: dict[str, int] = {}

    @property
    def families(self) -> int:
        """How many families of shared convolutions are resident."""
        return len(self._families)

    def loading(
        self, loader: Callable[[Hashable], Awaitable[LoadedGenerator]], run: DeviceRun
    ) -> Callable[[Hashable], Awaitable[LoadedGenerator]]:
        """Wrap the cache's loader so each generator joins its family once loaded."""

        async def load(key: Hashable) -> LoadedGenerator:
            loaded = await loader(key)
            if self.enabled and loaded.ort is None and loaded.compiled is None:
                await run(self._join, loaded)
            return loaded

        return load

    def model_key(self, generator: LoadedGenerator) -> Hashable:
        """Return what batches ``generator``'s requests: its family, or its own key."""
        member = self._members.get(generator)
        return generator.key if member is None else TrunkKey(member.digest)

    def batch_generator(self, items: Sequence[Any]) -> LoadedGenerator:
        """Return what runs a batch of ``items`` (each with ``.generator``).

        One style: its own generator. Several of one family: the family's network bound
        to each sample's γ/β (stacked here: a few kilobytes).
        """
        first: LoadedGenerator = items[0].generator
        # Same key, same weights (an evicted generator and its reload may both be queued).
        if all(item.generator.key == first.key for item in items):
            return first
        members = [self._members[item.generator] for item in items]
        multi = self._families[members[0].digest]
        bound = _Bound(multi, multi.stack([m.norms for m in members]))
        return LoadedGenerator(TrunkKey(members[0].digest), bound, first.info, 0)

    # --- device thread ----------------------------------------------------------------------

    def _join(self, loaded: LoadedGenerator) -> None:
        """Find ``loaded``'s family (device thread); share its convolutions' memory."""
        try:
            digest = trunk_digest(loaded.model)
        except Exception:  # an odd network serves alone rather than not at all
            log.warning("%s: cannot tell its convolutions apart; served alone", loaded.key)
            return
        if digest is None:
            return
        norms = style_norms(loaded.model)
        multi = self._families.get(digest)
        if multi is None:
            multi = self._families[digest] = MultiStyle(loaded.model)
            self._sizes[digest] = 0
            log.info("%s starts a family of shared convolutions (%s)", loaded.key, digest[:12])
        else:
            loaded.nbytes = norms_nbytes(norms)  # the family's convolutions are counted once
        _share(loaded.model, multi)
        self._members[loaded] = _Member(digest, norms)
        self._sizes[digest] += 1
        weakref.finalize(loaded, self._left, digest)

    def _left(self, digest: str) -> None:
        self._sizes[digest] -= 1
        if self._sizes[digest] <= 0:
            self._families.pop(digest, None)
            self._sizes.pop(digest, None)


def _share(model: nn.Module, multi: MultiStyle) -> None:
    """Point ``model``'s convolutions at ``multi``'s tensors (equal values, one copy)."""
    shared = dict(multi.body.named_parameters())
    shared.update(multi.body.named_buffers())
    with torch.no_grad():
        for name, param in model.named_parameters():
            source = shared.get(name)  # γ/β are not in the family's network: the style's own
            if source is not None and source.shape == param.shape:
                param.data = source.data
