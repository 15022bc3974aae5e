"""Progress of a running training: the style record, ``job.meta`` and preview images.

:class:`ProgressReporter` is the ``on_progress`` callback given to :func:`stylenet.train`.
It is called every ``params.progress_every`` iterations but writes at most every
``interval_s`` seconds (and always at the last iteration), so a fast GPU does not flood
the store. Each write is also the job's cancellation check: ``store.update`` refuses a
canceled or deleted style, and the reporter turns that into :class:`Canceled`, which
aborts training (``stylenet.train`` lets an exception from its callback through).
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from PIL import Image
from rq.timeouts import BaseTimeoutException
from torch import nn

from model_store import InvalidTransition, ModelStore, StyleNotFound
from model_store import Progress as StoreProgress
from stylenet import Progress, stylize

from .errors import Canceled

log = logging.getLogger(__name__)

PREVIEW_MAX_SIDE = 256


def _finite(value: float) -> float | None:
    # NaN/Infinity are not JSON: a diverging run must not break the readers of its progress.
    return round(value, 6) if math.isfinite(value) else None


def progress_dict(progress: Progress) -> dict[str, Any]:
    """Return the JSON-able progress report written to ``job.meta["progress"]``."""
    return {
        "iteration": progress.iteration,
        "total": progress.total,
        "fraction": round(progress.iteration / max(1, progress.total), 4),
        "losses": {k: _finite(v) for k, v in progress.losses.items()},
        "images_per_s": _finite(progress.images_per_s),
        "eta_s": _finite(progress.eta_s),
        "lr": _finite(progress.lr),
        "elapsed_s": _finite(progress.elapsed_s),
        "updated_at": time.time(),
    }


def guard_store_write(style_id: str, write: Callable[[], Any]) -> Any:
    """Run a store write, turning "canceled" and "deleted" into :class:`Canceled`.

    So is a progress report refused because the style left ``queued``/``training``
    without this run (another hand made it ready or failed: the API installed a demo
    style's bundled weights, say): its run is over.
    """
    try:
        return write()
    except StyleNotFound:
        raise Canceled(f"style {style_id} was deleted") from None
    except InvalidTransition as exc:
        if exc.canceled:
            raise Canceled(f"style {style_id} was canceled") from None
        if exc.requested == "progress":  # ready or failed by another hand: stop
            raise Canceled(f"style {style_id} became {exc.current} without this run") from None
        raise


def png_bytes(image: Image.Image) -> bytes:
    """Encode ``image`` as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


class ProgressReporter:
    """Throttled progress writer for one style's training (the ``on_progress`` hook).

    Args:
        store: the model store.
        style_id: the style being trained.
        job: the RQ job (None when called outside RQ); its ``meta`` gets the reports.
        interval_s: minimum seconds between writes.
        preview_every: iterations between previews (0: only :meth:`final_preview`).
        preview_image: the fixed content image previews stylize (None: no previews).
        check: called first on every report; raises to abort (shutdown, lost lock).
    """

    def __init__(
        self,
        store: ModelStore,
        style_id: str,
        job: Any,
        *,
        interval_s: float,
        preview_every: int,
        preview_image: Image.Image | None,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        """Create a reporter; nothing is written until the first report."""
        self.store, self.style_id, self.job = store, style_id, job
        self.interval_s, self.preview_every = interval_s, preview_every
        self.preview_image, self.check = preview_image, check
        self._last_write = -math.inf
        self._last_preview_iteration: int | None = None
        self.reports = 0

    def __call__(self, progress: Progress) -> None:
        """Record ``progress`` if due; raise :class:`Canceled` if the style was canceled."""
        self.check()
        final = progress.iteration >= progress.total
        if self._preview_due(progress.iteration):
            self.preview(progress.generator, progress.iteration)
        if final or time.monotonic() - self._last_write >= self.interval_s:
            self.write(progress)

    def _preview_due(self, iteration: int) -> bool:
        if self.preview_image is None or self.preview_every <= 0:
            return False
        last = self._last_preview_iteration
        return last is None or iteration - last >= self.preview_every

    def write(self, progress: Progress) -> None:
        """Write ``progress`` to the style record and to ``job.meta`` now.

        A cancel or delete raises :class:`Canceled`; any other failure to write is only
        logged: a storage hiccup must not throw away hours of training.
        """
        self._last_write = time.monotonic()
        eta = progress.eta_s if math.isfinite(progress.eta_s) else None
        loss = progress.losses.get("total")
        record = StoreProgress(
            progress.iteration,
            progress.total,
            eta,
            loss if loss is not None and math.isfinite(loss) else None,
        )
        try:
            guard_store_write(
                self.style_id, lambda: self.store.update(self.style_id, progress=record)
            )
            if self.job is not None:
                self.job.meta["progress"] = progress_dict(progress)
                self.job.save_meta()
        except (Canceled, BaseTimeoutException):
            raise
        except Exception:
            log.warning("style %s: could not write progress", self.style_id, exc_info=True)
            return
        self.reports += 1

    def preview(self, generator: nn.Module, iteration: int) -> None:
        """Stylize the fixed content image with ``generator``: the run's preview.

        It becomes the style's picture when the run publishes (``store.publish``).
        """
        if self.preview_image is None:
            return
        self._last_preview_iteration = iteration
        started = time.monotonic()
        try:
            data = png_bytes(stylize(self.preview_image, generator, max_side=PREVIEW_MAX_SIDE))
            guard_store_write(
                self.style_id, lambda: self.store.set_run_preview(self.style_id, data)
            )
        except (Canceled, BaseTimeoutException):
            raise
        except Exception:  # a preview is a nicety: never fail a training over one
            log.warning("style %s: could not make a preview", self.style_id, exc_info=True)
            return
        log.debug("preview at iteration %d took %.2f s", iteration, time.monotonic() - started)
