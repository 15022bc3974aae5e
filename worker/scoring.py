"""A published version's quality score, measured after the style is already usable.

:func:`score_version` runs :func:`stylenet.score.score_generator` at the fixed reference
on the run's held-out photos and records the report as the version's
``metrics["score"]`` (``{"status": "scoring"}`` until then; ``{"status": "failed",
"error": …}`` if it could not be measured). A score never fails the job: the weights are
published already.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_store import ModelStore
from model_store.errors import StyleNotFound
from stylenet import TrainParams
from stylenet.data import open_image
from stylenet.score import TrajectoryCache, score_generator

from .errors import readable

log = logging.getLogger(__name__)


def score_version(
    store: ModelStore,
    style_id: str,
    version: int,
    generator: nn.Module,
    params: TrainParams,
    metrics: dict[str, Any],
    *,
    content_dir: Path,
    device: torch.device | str,
    cache_dir: Path,
) -> dict[str, Any]:
    """Score ``version`` of ``style_id`` and record it; return what was recorded."""
    held = [Path(content_dir) / name for name in metrics.get("holdout_images", [])]
    try:
        painting = open_image(io.BytesIO(store.style_image(style_id)))
        score = score_generator(
            generator,
            painting,
            held,
            params,
            verified=bool(metrics.get("holdout_verified")),
            device=device,
            cache_dir=cache_dir,
            trajectory_cache=TrajectoryCache(Path(cache_dir) / "yardstick"),
        )
    except StyleNotFound:
        return {"status": "gone"}
    except Exception as exc:  # the weights are published: a score problem is only reported
        log.exception("style %s: could not score version %d", style_id, version)
        score = {"status": "failed", "error": readable(str(exc)) or type(exc).__name__}
    try:
        store.set_score(style_id, version, score)
    except StyleNotFound:
        return {"status": "gone"}
    except Exception:
        log.exception("style %s: could not record the score of version %d", style_id, version)
    return score


__all__ = ["score_version"]
