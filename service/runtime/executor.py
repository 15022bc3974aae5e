"""The device executor: the one thread that runs model code on the device.

Every forward pass, generator load and cache release runs here, so the event loop never
runs model code and work on one device is serialized without locks (a CUDA context and
its allocator are happiest driven from one thread). On CPU, torch's intra-op pool gives
that one thread all the cores; image decoding and encoding run in a separate small
pool, so they overlap with the forward pass instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from stylenet.devices import pick_device
from stylenet.errors import DeviceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_device(name: str) -> torch.device:
    """Turn the ``device`` setting into a :class:`torch.device` (``auto``: CUDA if present).

    Raises:
        RuntimeError: CUDA, or that GPU, was asked for but is not available.
    """
    try:
        return pick_device(name)
    except DeviceUnavailable as exc:
        raise RuntimeError(f"STYLIZE_DEVICE={name} but {exc}") from None


class DeviceExecutor:
    """A single worker thread owning ``device``."""

    def __init__(self, device: torch.device, *, threads: int) -> None:
        """Start the thread; on CPU, torch gets ``threads`` intra-op threads."""
        self.device = device
        self.threads = threads
        self._thread: threading.Thread | None = None
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylize-device")
        self._pool.submit(self._init).result()

    def _init(self) -> None:
        self._thread = threading.current_thread()
        if self.device.type == "cpu":
            # Process-wide in torch; set from here so it is in force before any forward.
            torch.set_num_threads(self.threads)
        else:
            torch.cuda.set_device(self.device)
        log.info("device executor on %s (torch threads: %d)", self.device, torch.get_num_threads())

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` on the device thread."""
        return self._pool.submit(fn, *args, **kwargs)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the device thread and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def alive(self) -> bool:
        """Whether the device thread exists and accepts work."""
        return not self._closed and self._thread is not None and self._thread.is_alive()

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, let queued work finish first."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
