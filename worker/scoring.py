"""A published version's quality score, measured after the style is already usable.

The training job publishes the version with ``metrics["score"] = {"status": "scoring"}``
and enqueues :func:`score_style` (``worker.scoring.score_style``, job id
``score-<style>-v<version>``) on its own queue: a training queued meanwhile runs first,
and the retrain of a style is not held up by its previous score. The job runs
:func:`score_version`: :func:`stylenet.score.score_generator` at the fixed reference on
the run's held-out photos, recorded as the version's ``metrics["score"]``
(``{"status": "failed", "error": …}`` if it could not be measured; a score never fails
anything). Where the job cannot be enqueued the training job scores inline.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer
from torch import nn

from model_store import ModelStore, open_store
from model_store.errors import StyleNotFound
from stylenet import TrainParams
from stylenet.data import open_image
from stylenet.model_file import load_generator
from stylenet.score import TrajectoryCache, score_generator

from .device import resolve_device
from .errors import readable
from .settings import WorkerSettings

log = logging.getLogger(__name__)
SCORE_FUNCTION = "worker.scoring.score_style"
#: A score at the reference takes minutes on a CPU, seconds on a GPU.
SCORE_TIMEOUT_S = 3600


def enqueue_score(connection: Redis, queue_name: str, style_id: str, version: int) -> None:
    """Queue the score of ``version`` behind whatever is queued already."""
    Queue(queue_name, connection=connection, serializer=JSONSerializer).enqueue(
        SCORE_FUNCTION,
        style_id,
        version,
        job_id=f"score-{style_id}-v{version}",
        job_timeout=SCORE_TIMEOUT_S,
        result_ttl=3600,
        failure_ttl=24 * 3600,
        retry=Retry(max=1),
    )


def score_style(style_id: str, version: int) -> dict[str, Any]:
    """Score one published version (an RQ job); a version already scored is left alone."""
    settings = WorkerSettings()
    return score_published(open_store(settings.model_store), settings, style_id, version)


def score_published(
    store: ModelStore, settings: WorkerSettings, style_id: str, version: int
) -> dict[str, Any]:
    """Score a published version from its stored weights, unless it is scored already.

    Raises:
        ModelStoreError, ModelFileError, InvalidParams: its weights or parameters cannot
            be read.
    """
    try:
        info = store.get(style_id).version_info(version)
    except StyleNotFound:
        return {"status": "gone"}
    if info is None or (info.metrics.get("score") or {}).get("status") != "scoring":
        return {"status": "skipped"}
    params = TrainParams.from_dict(dict(info.metadata["train_params"]))
    generator, _ = load_generator(store.open_weights(style_id, version))
    return score_version(
        store,
        style_id,
        version,
        generator,
        params,
        dict(info.metrics),
        content_dir=settings.content_dir,
        device=resolve_device(settings.device),
        cache_dir=settings.loss_cache_dir(),
    )


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


__all__ = [
    "SCORE_FUNCTION",
    "enqueue_score",
    "score_published",
    "score_style",
    "score_version",
]
