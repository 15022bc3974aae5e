"""A style's quality score: the yardstick at one fixed reference, the same for every style.

The yardstick (:mod:`stylenet.yardstick`) compares a generator with image optimization on
the same loss. Its figure means something only when every style is measured the same
way, so the score a style's record shows always uses:

* **the evaluation photos** of the content corpus: real photographs tagged
  ``evaluation`` in its manifest, never trained on (:func:`stylenet.data.split_content`);
  a folder without them (a user's own photos) is scored on photos held out by name hash,
  and the report says ``"photos": "unverified"``;
* **central crops at** :data:`SCORE_SIZE` **px**, whatever size the style trained at;
* **the style image at the style size the style was trained with**, under the loss it
  was trained on;
* **:data:`SCORE_STEPS` optimization steps** (``TrainParams.yardstick_steps``), however
  long the training was: a short run's score is not computed against a shorter (and so
  more flattering) optimization.

``reference`` in the report is true when all of that holds (the default steps, the
evaluation photos); ``bound`` is ``"upper"`` when any photo's r is an upper bound (the
generator is looser than the optimization ever got: "at most").

The optimization does not depend on the generator, so its trajectories are cached on
disk (:class:`TrajectoryCache`, keyed by the style image, the photo, the loss and the
reference): a retrain or another checkpoint of the same style pays only the
generator's forward passes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from .data import central_crops
from .files import atomic_write_bytes
from .losses import PerceptualLoss
from .params import TrainParams
from .train import build_loss, style_tensor
from .yardstick import DEFAULT_LR, DEFAULT_STYLE_RAMP, OptimizationRun, optimization_trajectory
from .yardstick import yardstick as run_yardstick

log = logging.getLogger(__name__)

SCORE_SIZE = 256
"""Side of the evaluation photos' central crops, px (whatever the training size)."""
SCORE_STEPS = 200
"""Optimization steps of the reference (the default ``TrainParams.yardstick_steps``)."""


class TrajectoryCache:
    """Optimization trajectories on disk, one JSON file per (style, photo, loss, reference).

    A missing or unreadable entry is computed again; writes are atomic, so concurrent
    workers at worst compute the same trajectory twice.
    """

    def __init__(self, folder: Path) -> None:
        """Keep entries under ``folder`` (created on the first write)."""
        self.folder = Path(folder)

    @staticmethod
    def key(
        style: torch.Tensor, photo: torch.Tensor, settings: dict[str, Any], device: torch.device
    ) -> str:
        """Return the entry's name: a digest of everything the trajectory depends on."""
        digest = hashlib.sha256()
        for tensor in (style, photo):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
        # CUDA runs the loss under bf16 autocast: its trajectories differ slightly.
        digest.update(json.dumps({**settings, "device": device.type}, sort_keys=True).encode())
        return digest.hexdigest()[:32]

    def get(self, key: str) -> OptimizationRun | None:
        """Return the cached run (its image is not kept), or None."""
        try:
            data = json.loads((self.folder / f"{key}.json").read_text())
            trajectory = [(float(c), float(s)) for c, s in data["trajectory"]]
            final = {k: float(v) for k, v in data["final"].items()}
            return OptimizationRun(torch.empty(0), trajectory, final, float(data["seconds"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, run: OptimizationRun) -> None:
        """Store ``run``'s trajectory (best effort: a read-only cache only costs time)."""
        data = {"trajectory": run.trajectory, "final": run.final, "seconds": run.seconds}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.folder / f"{key}.json", json.dumps(data).encode())
        except OSError as exc:
            log.warning("could not cache an optimization trajectory: %s", exc)


def reference_runs(
    loss: PerceptualLoss,
    style: torch.Tensor,
    photos: Sequence[torch.Tensor],
    steps: int,
    device: torch.device,
    loss_settings: dict[str, Any],
    cache: TrajectoryCache | None = None,
) -> list[OptimizationRun]:
    """Return the optimization runs of ``photos`` on ``loss`` (its style set), cached.

    ``loss_settings`` (``TrainParams.resolved()``) name the loss in the cache key.
    """
    settings = {
        "loss": loss_settings,
        "steps": steps,
        "lr": DEFAULT_LR,
        "style_ramp": DEFAULT_STYLE_RAMP,
    }
    runs = []
    for photo in photos:
        key = TrajectoryCache.key(style, photo, settings, device)
        run = cache.get(key) if cache is not None else None
        if run is None:
            run = optimization_trajectory(loss, photo, steps, device=device)
            if cache is not None:
                cache.put(key, run)
        runs.append(run)
    return runs


def score_generator(
    generator: nn.Module,
    style_image: Image.Image | Path | str,
    photos: Sequence[Path],
    params: TrainParams,
    *,
    verified: bool,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    trajectory_cache: TrajectoryCache | None = None,
    size: int = SCORE_SIZE,
) -> dict[str, Any]:
    """Score ``generator`` at the fixed reference (see the module docstring).

    Args:
        generator: the style's generator (any device; it is moved to ``device``).
        style_image: the style's painting.
        photos: the held-out photos (:attr:`stylenet.data.ContentSplit.held`).
        params: the style's training parameters (loss, style size, ``yardstick_steps``).
        verified: whether ``photos`` are the corpus's evaluation photos.
        device: where to run.
        cache_dir: the loss-network weight cache.
        trajectory_cache: where optimization trajectories are kept between scores.
        size: crop side (the reference is :data:`SCORE_SIZE`; tests use less).

    Returns:
        The yardstick report (:func:`stylenet.yardstick.yardstick`) plus ``reference``,
        ``photos`` (``"evaluation"`` or ``"unverified"``), ``bound`` and ``status``
        (``"done"``).

    Raises:
        ValueError: no photo could be read.
    """
    device = torch.device(device)
    started = time.perf_counter()
    crops = central_crops(list(photos), size)
    if not crops:
        raise ValueError("no held-out photo to score on")
    loss = build_loss(params, device, cache_dir)
    style = style_tensor(style_image, params.style_size)
    loss.set_style(style.to(device))
    images = [image for _, image in crops]
    steps = params.yardstick_steps
    runs = reference_runs(loss, style, images, steps, device, params.resolved(), trajectory_cache)
    generator = generator.to(device)
    report = run_yardstick(
        generator,
        loss,
        images,
        steps,
        device=device,
        names=[path.name for path, _ in crops],
        style_size=params.style_size,
        runs=runs,
    )
    bounds = {entry["bound"] for entry in report["images"]}
    report.update(
        status="done",
        photos="evaluation" if verified else "unverified",
        reference=verified and steps == SCORE_STEPS and size == SCORE_SIZE,
        bound="upper" if "upper" in bounds else ("lower" if "lower" in bounds else None),
        seconds=round(time.perf_counter() - started, 2),
    )
    log.info(
        "score: r = %s%s over %d photos (%d steps, %.1f s)",
        "at most " if report["bound"] == "upper" else "",
        report["r_mean"],
        len(images),
        steps,
        report["seconds"],
    )
    return report


__all__ = ["SCORE_SIZE", "SCORE_STEPS", "TrajectoryCache", "reference_runs", "score_generator"]
