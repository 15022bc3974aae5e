"""LRU cache of generators resident on the device, bounded by count and bytes.

* One load at a time per key: concurrent misses for the same style version share one
  load (a future), and a caller that goes away does not cancel it for the others.
* Failed loads are not cached: the next request tries again (and reports again).
* Eviction drops the cache's reference and asks the device thread to return freed
  memory to the driver; a batch still running with an evicted generator keeps it alive
  until it ends, so eviction never pulls weights from under a forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from service.metrics import ServiceMetrics
from service.runtime.generators import LoadedGenerator

log = logging.getLogger(__name__)

Loader = Callable[[Hashable], Awaitable[LoadedGenerator]]


class GeneratorCache:
    """Generators by key, least recently used evicted first."""

    def __init__(
        self,
        loader: Loader,
        *,
        max_models: int,
        max_bytes: int,
        metrics: ServiceMetrics,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Create an empty cache.

        Args:
            loader: builds the generator of a key on the device (may raise).
            max_models: most generators kept.
            max_bytes: most device bytes kept; the newest generator is kept even if it
                alone is larger.
            metrics: where hits, misses, evictions and load times go.
            release: called after evictions to free device memory.
        """
        self._loader = loader
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._release = release
        self._entries: OrderedDict[Hashable, LoadedGenerator] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[LoadedGenerator]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        """Device bytes held by cached generators."""
        return sum(e.nbytes for e in self._entries.values())

    async def get(self, key: Hashable) -> LoadedGenerator:
        """Return the generator of ``key``, loading it on a miss.

        Raises:
            Exception: whatever the loader raised (store, checksum, model file errors).
        """
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self._metrics.cache_hits.inc()
            return entry
        self._metrics.cache_misses.inc()
        future = self._loading.get(key)
        if future is None:
            future = asyncio.ensure_future(self._load(key))
            self._loading[key] = future
            future.add_done_callback(lambda f, key=key: self._load_done(key, f))
        # shield: one caller giving up must not cancel the load the others wait for.
        return await asyncio.shield(future)

    def discard(self, match: Callable[[Hashable], bool]) -> int:
        """Drop the entries whose key matches (e.g. a deleted style); return how many."""
        keys = [k for k in self._entries if match(k)]
        for key in keys:
            del self._entries[key]
        self._update_gauges()
        return len(keys)

    # --- internals ------------------------------------------------------------------------

    def _load_done(self, key: Hashable, future: asyncio.Future[LoadedGenerator]) -> None:
        self._loading.pop(key, None)
        if not future.cancelled() and future.exception() is not None:
            # Retrieved here so an abandoned failed load is not logged as "never retrieved".
            self._metrics.model_load_failures.labels(reason=type(future.exception()).__name__).inc()

    async def _load(self, key: Hashable) -> LoadedGenerator:
        started = time.monotonic()
        loaded = await self._loader(key)
        self._metrics.model_load.observe(time.monotonic() - started)
        log.info("loaded generator %s (%.1f MB)", key, loaded.nbytes / 1e6)
        self._entries[key] = loaded
        self._entries.move_to_end(key)
        evicted = self._evict(keep=key)
        self._update_gauges()
        if evicted and self._release is not None:
            await self._release()
        return loaded

    def _evict(self, keep: Hashable) -> int:
        evicted = 0
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_models or self.nbytes > self.max_bytes
        ):
            oldest = next(iter(self._entries))
            if oldest == keep:  # pragma: no cover - keep is always the newest
                break
            del self._entries[oldest]
            evicted += 1
            self._metrics.cache_evictions.inc()
            log.info("evicted generator %s", oldest)
        return evicted

    def _update_gauges(self) -> None:
        self._metrics.cache_models.set(len(self._entries))
        self._metrics.cache_bytes.set(self.nbytes)
