"""Train a feed-forward generator for one style (Ulyanov et al. 2016; Johnson et al. 2016).

:func:`train` optimizes a generator with Adam so that its outputs keep the content
features of random content crops while matching the Gram statistics of one style
image under a frozen VGG. It reports progress through a callback (which may raise to
abort), checkpoints periodically, resumes from the last checkpoint, and ends with an
evaluation of the losses on held-out content images that were never trained on. The
quality score (:mod:`stylenet.score`) is measured apart, after the generator is
published, so a style is usable as soon as its training ends. A run starts from
scratch or from given weights (``init_state``: a base generator or another style's,
chosen by :mod:`stylenet.warmstart`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint
from .conditional import norm_parameter_names, rank_norms, with_norms
from .data import (
    ContentImages,
    CropSequence,
    central_crops,
    find_images,
    iterate_batches,
    open_image,
    split_content,
)
from .devices import autocast, synchronize
from .errors import ContentImagesError
from .generators import build_generator
from .losses import LossTerms, PerceptualLoss
from .lossnet import load_vgg
from .params import TrainParams
from .pixels import image_to_tensor
from .speed import RateMeter
from .step import StepOptions, TrainStep

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """A progress report, passed to ``on_progress`` every ``params.progress_every`` steps."""

    iteration: int
    total: int
    losses: dict[str, float]
    images_per_s: float
    eta_s: float
    lr: float
    elapsed_s: float
    generator: nn.Module = field(repr=False)

    @torch.no_grad()
    def preview(self, image: Image.Image, max_side: int = 256) -> Image.Image:
        """Stylize ``image`` with the generator as it is now (for live previews)."""
        from .inference import stylize  # local: inference imports nothing from training

        return stylize(image, self.generator, max_side=max_side)


@dataclass
class TrainResult:
    """The trained generator (eval mode, on CPU) and what was measured."""

    generator: nn.Module
    metrics: dict[str, Any]
    params: TrainParams
    lossnet: str


def learning_rate(params: TrainParams, iteration: int) -> float:
    """Return the learning rate at ``iteration`` (a pure function: resuming needs no state)."""
    if params.lr_schedule == "constant":
        return params.lr
    progress = iteration / max(1, params.iterations)
    if params.lr_schedule == "step":
        return params.lr * (0.1 if progress >= 2 / 3 else 1.0)
    return params.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def style_tensor(style: Image.Image | Path | str, size: int) -> torch.Tensor:
    """Return the style image resized so its longer side is ``size``, as a 1×3×H×W tensor."""
    image = style if isinstance(style, Image.Image) else open_image(style)
    scale = size / max(image.size)
    if scale != 1:
        target = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
        image = image.resize(target, Image.Resampling.LANCZOS)
    return image_to_tensor(image)


def build_loss(params: TrainParams, device: torch.device, cache_dir: Path | None) -> PerceptualLoss:
    """Build the perceptual loss these params ask for, on ``device``."""
    settings = params.resolved()
    taps = [*settings["content_layers"], *settings["style_layers"]]
    vgg = load_vgg(settings["lossnet"], taps, cache_dir=cache_dir, device=device)
    return PerceptualLoss.from_settings(vgg, settings)


@torch.no_grad()
def evaluate(
    generator: nn.Module, loss: PerceptualLoss, images: list[torch.Tensor], device: torch.device
) -> dict[str, float]:
    """Mean loss terms of ``generator`` over ``images`` (each 1×3×H×W), in eval mode."""
    was_training = generator.training
    generator.eval()
    totals: dict[str, float] = {}
    try:
        for image in images:
            image = image.to(device)
            with autocast(device):
                terms = loss(generator(image), image)
            for key, value in terms.as_floats().items():
                totals[key] = totals.get(key, 0.0) + value / len(images)
    finally:
        generator.train(was_training)
    return totals


def _default_init(init_state: Mapping[str, torch.Tensor] | None) -> dict[str, Any]:
    return {"kind": "scratch"} if init_state is None else {"kind": "weights"}


def _batches(
    params: TrainParams, content: ContentImages, start: int
) -> Iterator[tuple[int, torch.Tensor]]:
    sequence = CropSequence(
        content, params.image_size, params.batch_size, params.seed, params.iterations
    )
    return iterate_batches(sequence, start, params.num_workers)


ADAPT_NORM_FIRST_STEPS = 0
"""Steps of γ/β alone when adapting a joint base, unless the params say otherwise.
Measured (``bench/adapt.py``, docs/QUALITY.md): on the CPU draft's budget, 100 steps of
γ/β alone from the CPU-trained joint base lost to training every weight from its best
row (r 0.078 vs 0.086 at 300 steps), so none; a GPU-trained base may change this."""


def _start_from_best_row(
    generator: nn.Module,
    rows: Sequence[Mapping[str, torch.Tensor]],
    loss: PerceptualLoss,
    content: ContentImages,
    params: TrainParams,
) -> dict[str, Any]:
    """Load the table row that paints this style best into ``generator``; describe it."""
    # One batch the training never steps on (seed + 1), the same for every row.
    batch = CropSequence(content, params.image_size, params.batch_size, params.seed + 1, 1)[0]
    device = next(generator.parameters()).device
    rows = [{k: v.to(device) for k, v in row.items()} for row in rows]
    losses = rank_norms(generator, rows, loss, batch)
    best = min(range(len(losses)), key=losses.__getitem__)
    state = with_norms(dict(generator.state_dict()), [rows[best]], [1.0])
    generator.load_state_dict(state)
    return {"index": best, "loss": round(losses[best], 4), "rows": len(rows)}


class _Freezer:
    """Freezes all but the instance norms' γ/β for the first ``steps`` iterations.

    A frozen weight gets no gradient (none is computed for it) and Adam skips it, so its
    moments start when it thaws. Which weights train is a function of the iteration
    alone: a resumed run freezes exactly as an uninterrupted one.
    """

    def __init__(self, generator: nn.Module, steps: int) -> None:
        self.steps = steps
        self.frozen: bool | None = None
        names = set(norm_parameter_names(generator)) if steps else set()
        self.convs = [p for n, p in generator.named_parameters() if n not in names]

    def at(self, iteration: int) -> None:
        frozen = iteration < self.steps
        if frozen != self.frozen:
            for param in self.convs:
                param.requires_grad_(not frozen)
            self.frozen = frozen


def train(
    style_image: Image.Image | Path | str,
    content_dir: Path | str,
    params: TrainParams,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    checkpoint_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    channels_last: bool = False,
    options: StepOptions | None = None,
    progress_interval_s: float = math.inf,
    init_state: Mapping[str, torch.Tensor] | None = None,
    init_info: Mapping[str, Any] | None = None,
    init_norms: Sequence[Mapping[str, torch.Tensor]] | None = None,
) -> TrainResult:
    """Train a generator for ``style_image`` on the photos under ``content_dir``.

    Args:
        style_image: the style (a PIL image or a path).
        content_dir: folder searched recursively for jpg/png/webp content photos;
            ``params.holdout`` of them are kept out of training for evaluation.
        params: the training parameters.
        on_progress: called every ``params.progress_every`` iterations, after any step
            that ends ``progress_interval_s`` after the previous call, and at the end;
            raising from it aborts training (the last checkpoint stays for a resume).
            ``eta_s`` and ``images_per_s`` are smoothed (:class:`stylenet.speed.RateMeter`).
        checkpoint_dir: where checkpoints go; a checkpoint found there is resumed.
        device: ``cpu`` or ``cuda[:N]``; on CUDA training uses bf16 autocast.
        cache_dir: loss-network weight cache (default: ``stylenet.lossnet.default_cache_dir``).
        channels_last: on CUDA, train in channels_last memory format (off by default: with
            instance norm it measured slower on an H100, see bench/bench_stylenet.py).
        options: how each step is computed (default: :meth:`StepOptions.for_device`);
            options change speed, not the recipe.
        progress_interval_s: also report progress after a step that ends this long
            after the previous report (slow devices: a timer besides ``progress_every``).
        init_state: weights to start from instead of a seeded initialization (a state
            dict of the same generator structure; a checkpoint found still wins).
        init_info: what ``init_state`` is, recorded as ``metrics["init"]`` (default
            ``{"kind": "scratch"}`` without ``init_state``).
        init_norms: a joint base's γ/β table (:mod:`stylenet.conditional`): the run
            starts from the row whose γ/β paint this style best on one batch of crops
            (:func:`~stylenet.conditional.rank_norms`, recorded as ``init.norm_row``),
            and ``norm_first_steps`` None means :data:`ADAPT_NORM_FIRST_STEPS`.

    Returns:
        The trained generator (on CPU, eval mode) and its metrics (``holdout_images``:
        the held-out photos, ``holdout_verified``: whether they are the corpus's
        evaluation photos; score them with :func:`stylenet.score.score_generator`).

    Raises:
        ContentImagesError: no usable content image.
        ImageError: the style image cannot be decoded.
        WeightsNotFound: the loss network has not been fetched.
    """
    device = torch.device(device)
    started = time.monotonic()
    style = style_tensor(style_image, params.style_size)
    paths = find_images(Path(content_dir))
    split = split_content(paths, params.holdout)
    train_paths, held_paths = split.train, split.held
    content = ContentImages(train_paths, params.image_size)
    content.check_usable(str(content_dir))
    held_images = [image for _, image in central_crops(held_paths, params.image_size)]

    options = options or StepOptions.for_device(device, channels_last=channels_last)
    loss = build_loss(params, device, cache_dir)
    loss.set_style(style.to(device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        generator = build_generator(params.generator_config)
    if init_state is not None:
        # strict: a state dict of another structure is refused, never half-loaded.
        generator.load_state_dict(init_state, strict=True)
    generator = generator.to(device).train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=params.lr)
    step = TrainStep(generator, loss, optimizer, device, options)

    folder = Path(checkpoint_dir) if checkpoint_dir else None
    start = load_checkpoint(folder, generator, optimizer, params) if folder else 0
    if start:
        log.info("resuming from checkpoint at iteration %d", start)
    terms: LossTerms | None = None
    loop_started = time.monotonic()
    meter = RateMeter()
    last_report = time.monotonic()
    info = dict(init_info) if init_info is not None else _default_init(init_state)
    norm_first = params.norm_first_steps
    if init_norms:
        if not start:  # a resumed run has its weights from the checkpoint
            info["norm_row"] = _start_from_best_row(generator, init_norms, loss, content, params)
        if norm_first is None:
            norm_first = ADAPT_NORM_FIRST_STEPS
    frozen = _Freezer(generator, norm_first or 0)
    for iteration, batch in _batches(params, content, start):
        lr = learning_rate(params, iteration)
        frozen.at(iteration)
        terms = step(batch, lr)
        done = iteration + 1
        meter.tick(done)
        if folder and params.checkpoint_every and done % params.checkpoint_every == 0:
            save_checkpoint(folder, generator, optimizer, done, params)
        due = done % params.progress_every == 0 or done == params.iterations
        if on_progress and (due or time.monotonic() - last_report >= progress_interval_s):
            last_report = time.monotonic()
            rate = meter.iterations_per_s()
            on_progress(
                Progress(
                    iteration=done,
                    total=params.iterations,
                    losses=terms.as_floats(),
                    images_per_s=rate * params.batch_size,
                    eta_s=meter.eta_s(params.iterations - done),
                    lr=lr,
                    elapsed_s=time.monotonic() - started,
                    generator=generator,
                )
            )
    frozen.at(params.iterations)  # everything trainable again
    if folder and start < params.iterations:
        save_checkpoint(folder, generator, optimizer, params.iterations, params)
    synchronize(device)
    loop_seconds = time.monotonic() - loop_started

    step.close()
    holdout = evaluate(generator, loss, held_images, device) if held_images else {}
    metrics = {
        "iterations": params.iterations,
        "resumed_from": start,
        "train_seconds": round(time.monotonic() - started, 3),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "final_train_loss": terms.as_floats() if terms is not None else {},
        "images_per_s": round(
            (params.iterations - start) * params.batch_size / max(loop_seconds, 1e-9), 3
        ),
        "holdout_images": [p.name for p in held_paths],
        "holdout_verified": split.verified,
        "init": info,
        "norm_first_steps": norm_first or 0,
        "holdout_loss": holdout,
        "content_images": len(train_paths),
        "step_options": options.describe(),
    }
    return TrainResult(generator.cpu().eval(), metrics, params, params.resolved()["lossnet"])


__all__ = ["ContentImagesError", "Progress", "TrainResult", "evaluate", "learning_rate", "train"]
