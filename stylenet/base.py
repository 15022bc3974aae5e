"""A base generator made to adapt: trained across many paintings, two methods.

``method="reptile"`` (this module's loop) is first-order meta-learning of the plain
generator; ``method="joint"`` (:mod:`stylenet.conditional`) trains shared convolutions
with per-painting instance-norm γ/β (conditional instance norm). ``bench/adapt.py``
measures which adapts faster.

Reptile (Nichol, Achiam, Schulman 2018), as MetaStyle (Zhang et al. 2019) uses it for
style transfer: outer step ``i`` takes one painting, copies the base weights θ into a
working generator, runs ``inner_steps`` ordinary training steps on it (the step of
:func:`stylenet.train`, Adam restarted per painting) to θ', and moves the base toward
the result: θ ← θ + ε_i (θ' − θ), with ε_i annealed linearly from ``meta_lr`` to 0.
θ then sits where a few hundred ordinary steps from it reach any painting's generator:
:func:`stylenet.train` initialized with the base's weights adapts it to a new one.

Everything of outer step ``i`` is a pure function of ``(seed, i)``: its painting (a
permutation of the paintings per epoch) and its content crops (item ``i × k + j`` of one
:class:`~stylenet.data.CropSequence`). Adam's state is reset per painting, so a
checkpoint is just θ and the outer step, and a resumed run reaches exactly the weights
of an uninterrupted one on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from safetensors.torch import save
from torch import nn

from . import conditional
from .data import ContentImages, CropSequence, find_images, iterate_batches, split_content
from .errors import InvalidParams, ModelFileError
from .files import atomic_write_bytes
from .generators import build_generator
from .lossnet import file_digest
from .model_file import save_generator
from .params import MAX_SEED, Arch, Float, Int, LossNet, Norm, Preset, TrainParams, Weight
from .params import _invalid as _invalid_params
from .step import StepOptions, TrainStep
from .train import build_loss, style_tensor

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "base-checkpoint.safetensors"  # not train()'s name: one folder may hold both
KIND = "base"
# Fields that do not change the result: a run may resume with other values.
_FREE_FIELDS = ("checkpoint_every", "num_workers")
_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, title="BaseParams")
METHODS = ("reptile", "joint")


@pydantic_dataclass(frozen=True, config=_CONFIG)
class BaseParams:
    """How to meta-train a base generator (strict types, like :class:`TrainParams`).

    Attributes:
        method: ``reptile`` (first-order meta-learning of every weight) or ``joint``
            (conditional instance norm: shared convolutions, γ/β per painting; the base
            holds their mean, :mod:`stylenet.conditional`).
        arch: generator architecture (``residual``, or ``multiscale``).
        width: generator channel multiplier.
        norm: ``instance`` (the paper's) or ``batch`` (ablation baseline).
        preset: loss recipe (``ulyanov``: VGG19; ``johnson``: VGG16).
        lossnet: weight source of the loss network (default: the preset's).
        content_weight, style_weight, tv_weight: loss multipliers (default: the preset's).
        image_size: side of the square content crops, in pixels.
        style_size: longer side each painting is resized to before its Grams are taken.
        batch_size: content crops per inner step.
        outer_steps: meta-updates of the base (one painting each).
        inner_steps: Adam steps on one painting per outer step (Reptile's k).
        inner_lr: Adam learning rate of the inner steps (reptile: constant; joint: a
            cosine over the run down to 10 %).
        meta_lr: the first outer step size ε; it decays linearly to 0 over outer_steps
            (reptile only).
        seed: seeds initialization, the order of the paintings and the content crops.
        holdout: content photos left out when the folder has none of the corpus's
            evaluation photos (those are always left out), as :func:`stylenet.train` does.
        checkpoint_every: outer steps between checkpoints (0: only at the end).
        num_workers: background processes that load content crops (0 loads inline).
    """

    method: Literal[METHODS] = Field("reptile", description="reptile or joint")  # type: ignore[valid-type]
    arch: Arch = Field("residual", description="Generator architecture")
    width: Float = Field(0.5, ge=0.125, le=4.0, description="Channel multiplier")
    norm: Norm = Field("instance", description="Normalization layers")
    preset: Preset = Field("ulyanov", description="Loss recipe")
    lossnet: LossNet | None = Field(None, description="Loss-network weights (preset's)")
    content_weight: Weight | None = Field(None, description="Default: the preset's")
    style_weight: Weight | None = Field(None, description="Default: the preset's")
    tv_weight: Weight | None = Field(None, description="Default: the preset's")
    image_size: Int = Field(128, ge=32, le=1024, description="Content crop side, px")
    style_size: Int = Field(256, ge=32, le=2048, description="Painting longer side, px")
    batch_size: Int = Field(4, ge=1, le=64, description="Content crops per inner step")
    outer_steps: Int = Field(2000, ge=1, le=1_000_000, description="Meta-updates")
    inner_steps: Int = Field(8, ge=1, le=10_000, description="Adam steps per painting")
    inner_lr: Float = Field(1e-3, gt=0, le=1.0, description="Inner Adam learning rate")
    meta_lr: Float = Field(1.0, gt=0, le=1.0, description="First outer step size")
    seed: Int = Field(0, ge=0, le=MAX_SEED, description="Init, painting and crop order")
    holdout: Int = Field(4, ge=0, le=100, description="Content photos left out")
    checkpoint_every: Int = Field(100, ge=0, le=1_000_000, description="0: at the end only")
    num_workers: Int = Field(0, ge=0, le=32, description="Crop-loading processes")

    @property
    def train_params(self) -> TrainParams:
        """The generator and loss settings as :class:`TrainParams` (an adaptation's start)."""
        shared = {f.name for f in dataclasses.fields(TrainParams)} & set(_FIELDS)
        data = {k: getattr(self, k) for k in shared if k not in _FREE_FIELDS}
        return TrainParams.from_dict({**data, "lr": self.inner_lr})

    def __post_init__(self) -> None:
        # The loss and generator fields must also make valid TrainParams (cross-field rules).
        _ = self.train_params
        if self.method == "joint" and self.norm != "instance":
            raise InvalidParams("norm", "joint training conditions instance norm; use instance")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict that :meth:`from_dict` turns back into equal params."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> BaseParams:
        """Validate a decoded JSON object into params.

        Raises:
            InvalidParams: not an object, an unknown key, a wrong type or an out-of-range
                value; ``field`` names the first offending parameter.
        """
        if not isinstance(data, dict):
            raise InvalidParams("params", "must be a JSON object")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise InvalidParams(unknown[0], f"unknown parameter; known: {sorted(_FIELDS)}")
        try:
            return _ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise _invalid_params(exc) from None


_FIELDS = tuple(f.name for f in dataclasses.fields(BaseParams))
_ADAPTER: TypeAdapter[BaseParams] = TypeAdapter(BaseParams)


@dataclass
class BaseProgress:
    """A report after each outer step (``on_progress`` may raise to abort the run)."""

    outer_step: int
    total: int
    inner_loss: float  # mean total loss over the step's inner steps
    painting: str
    meta_lr: float  # the ε this step used
    step_seconds: float
    elapsed_s: float


@dataclass
class BaseResult:
    """The base generator (eval mode, on CPU) and what was measured.

    ``norms``: for ``method="joint"``, every painting's γ/β (write it with
    :func:`stylenet.conditional.save_norm_table`); None for reptile.
    """

    generator: nn.Module
    metrics: dict[str, Any]
    norms: conditional.JointState | None = None


def meta_step_size(params: BaseParams, outer_step: int) -> float:
    """Return ε of ``outer_step``: ``meta_lr`` decayed linearly to 0 (Reptile's schedule)."""
    return params.meta_lr * (1.0 - outer_step / params.outer_steps)


def painting_index(seed: int, count: int, outer_step: int) -> int:
    """Return the painting of ``outer_step``: every epoch visits each painting once.

    A string seed makes :class:`random.Random` hash it with sha512: the order does not
    depend on the Python process (``PYTHONHASHSEED``) nor on the crops' generator.
    """
    epoch, position = divmod(outer_step, count)
    order = list(range(count))
    random.Random(f"stylize-base-paintings:{seed}:{epoch}").shuffle(order)
    return order[position]


def fingerprint(params: BaseParams, digests: Sequence[str]) -> str:
    """Return the JSON of what shapes the result (a resumed run must match it)."""
    data = params.to_dict()
    for name in _FREE_FIELDS:
        data.pop(name, None)
    return json.dumps({"params": data, "paintings": list(digests)}, sort_keys=True)


def _save_checkpoint(
    folder: Path, theta: dict[str, torch.Tensor], outer_step: int, print_: str
) -> None:
    tensors = {f"base.{k}": v.detach().cpu().contiguous() for k, v in theta.items()}
    metadata = {"outer_step": str(outer_step), "fingerprint": print_}
    atomic_write_bytes(folder / CHECKPOINT_NAME, save(tensors, metadata=metadata))


def _load_checkpoint(folder: Path, theta: dict[str, torch.Tensor], print_: str) -> int:
    """Load θ from ``folder`` into ``theta`` (in place); return the outer step to resume at."""
    path = folder / CHECKPOINT_NAME
    outer_step, tensors = conditional.read_checkpoint(path, print_)
    if not outer_step:
        return 0
    loaded = {k.removeprefix("base."): v for k, v in tensors.items()}
    if loaded.keys() != theta.keys():
        raise ModelFileError(f"base checkpoint {path} does not fit the generator")
    for key, value in loaded.items():
        theta[key].copy_(value)
    return outer_step


def _reptile_loop(
    params: BaseParams,
    step: TrainStep,
    targets: Sequence[dict[str, torch.Tensor]],
    crops: CropSequence,
    folder: Path | None,
    print_: str,
    count: int,
    report: Callable[[int, int, float, float, float], None],
) -> tuple[int, dict[str, torch.Tensor], float]:
    """Reptile's outer loop; return the resume point, θ and the last mean inner loss."""
    generator, optimizer, device, loss = step.generator, step.optimizer, step.device, step.loss
    # θ lives apart from the working generator, in float32 (a copy, not a view of it).
    theta = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    working = generator.state_dict()  # views of the live weights, whatever their layout
    start = _load_checkpoint(folder, theta, print_) if folder else 0
    if start:
        log.info("resuming the base from outer step %d", start)
    k = params.inner_steps
    batches = iterate_batches(crops, start * k, params.num_workers)
    last_loss = float("nan")
    for outer in range(start, params.outer_steps):
        step_started = time.monotonic()
        index = painting_index(params.seed, count, outer)
        loss.style_targets = targets[index]
        with torch.no_grad():
            for key, value in working.items():
                value.copy_(theta[key])
        optimizer.state.clear()  # a fresh Adam per painting (and nothing to checkpoint)
        total = torch.zeros((), device=device)
        for _ in range(k):
            _, batch = next(batches)
            total += step(batch, params.inner_lr).total.detach().float()
        epsilon = meta_step_size(params, outer)
        with torch.no_grad():
            for key, value in theta.items():
                if value.is_floating_point():
                    # lerp, not θ + ε(θ' − θ): exact θ' at ε = 1 (its formula switches ends).
                    value.lerp_(working[key], epsilon)
                else:
                    value.copy_(working[key])
        done = outer + 1
        last_loss = float(total) / k  # one device sync per outer step
        if folder and params.checkpoint_every and done % params.checkpoint_every == 0:
            _save_checkpoint(folder, theta, done, print_)
        report(done, index, last_loss, epsilon, step_started)
    if folder and start < params.outer_steps:
        _save_checkpoint(folder, theta, params.outer_steps, print_)
    return start, theta, last_loss


def train_base(
    style_images: Sequence[Path | str],
    content_dir: Path | str,
    params: BaseParams,
    *,
    checkpoint_dir: Path | str | None = None,
    device: torch.device | str = "cpu",
    cache_dir: Path | None = None,
    on_progress: Callable[[BaseProgress], None] | None = None,
    options: StepOptions | None = None,
) -> BaseResult:
    """Meta-train a base generator on ``style_images`` with Reptile.

    Args:
        style_images: the paintings (image files); their order is part of the recipe.
        content_dir: folder searched recursively for content photos; the ones
            :func:`stylenet.train` holds out are left out.
        params: the meta-training parameters.
        checkpoint_dir: θ and the outer step are written there every
            ``params.checkpoint_every`` outer steps and at the end; one found there is
            resumed (one made with other parameters or paintings is refused).
        device: ``cpu`` or ``cuda[:N]``.
        cache_dir: loss-network weight cache (default: ``stylenet.lossnet.default_cache_dir``).
        on_progress: called after every outer step; raising from it aborts the run (the
            last checkpoint stays for a resume).
        options: how each inner step is computed (default: :meth:`StepOptions.for_device`).

    Returns:
        The base generator (on CPU, eval mode) and its metrics: outer steps, the
        paintings (file names and sha256), seconds, content images per second.

    Raises:
        InvalidParams: no painting given.
        ContentImagesError: no usable content image.
        ImageError: a painting cannot be decoded.
        WeightsNotFound: the loss network has not been fetched.
        ModelFileError: the checkpoint was made with other parameters or paintings.
    """
    device = torch.device(device)
    started = time.monotonic()
    paintings = [Path(p) for p in style_images]
    if not paintings:
        raise InvalidParams("style_images", "needs at least one painting")
    digests = [file_digest(p) for p in paintings]
    # train()'s split: the corpus's evaluation photos (else ``holdout`` photos) are never
    # trained on, so an adaptation is scored on photos the base has not seen either.
    train_paths = split_content(find_images(Path(content_dir)), params.holdout).train
    content = ContentImages(train_paths, params.image_size)
    content.check_usable(str(content_dir))

    settings = params.train_params
    loss = build_loss(settings, device, cache_dir)  # the VGG is loaded once for all paintings
    targets: list[dict[str, torch.Tensor]] = []
    for path in paintings:  # each painting's Grams once; a task swaps them in
        loss.set_style(style_tensor(path, params.style_size).to(device))
        targets.append(loss.style_targets)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        generator = build_generator(settings.generator_config).to(device).train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=params.inner_lr)
    options = options or StepOptions.for_device(device)
    step = TrainStep(generator, loss, optimizer, device, options)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    print_ = fingerprint(params, digests)
    k = params.inner_steps
    crops = CropSequence(
        content, params.image_size, params.batch_size, params.seed, params.outer_steps * k
    )

    def report(done: int, index: int, inner_loss: float, rate: float, began: float) -> None:
        if on_progress:
            now = time.monotonic()
            on_progress(
                BaseProgress(
                    done,
                    params.outer_steps,
                    inner_loss,
                    paintings[index].name,
                    rate,
                    now - began,
                    now - started,
                )
            )

    loop_started = time.monotonic()
    norms: conditional.JointState | None = None
    if params.method == "joint":
        # The crops resume where the checkpoint stopped.
        start = conditional.peek_outer_step(folder, print_) if folder else 0
        clock = [time.monotonic()]

        def joint_report(done: int, index: int, inner_loss: float, lr: float) -> None:
            report(done, index, inner_loss, lr, clock[0])
            clock[0] = time.monotonic()

        run = conditional.JointRun(
            step,
            targets,
            iterate_batches(crops, start * k, params.num_workers),
            lambda outer: painting_index(params.seed, len(paintings), outer),
            params.outer_steps,
            k,
            params.inner_lr,
        )
        norms, last_loss = conditional.joint_loop(
            run, start, folder, params.checkpoint_every, print_, joint_report
        )
        theta = {k_: v.detach().clone() for k_, v in generator.state_dict().items()}
    else:
        start, theta, last_loss = _reptile_loop(
            params, step, targets, crops, folder, print_, len(paintings), report
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    loop_seconds = time.monotonic() - loop_started

    step.close()  # back to NCHW: ``working`` no longer views the live weights
    generator.load_state_dict(theta)
    ran = params.outer_steps - start
    metrics = {
        "kind": KIND,
        "method": params.method,
        "outer_steps": params.outer_steps,
        "inner_steps": k,
        "resumed_from": start,
        "paintings": [
            {"file": p.name, "sha256": d} for p, d in zip(paintings, digests, strict=True)
        ],
        "content_images": len(train_paths),
        "seconds": round(time.monotonic() - started, 3),
        "seconds_per_outer_step": round(loop_seconds / ran, 4) if ran else None,
        "images_per_s": round(ran * k * params.batch_size / max(loop_seconds, 1e-9), 3),
        "final_inner_loss": last_loss if ran else None,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "step_options": options.describe(),
    }
    if norms is not None:
        norms = conditional.JointState(
            [{n: v.cpu() for n, v in row.items()} for row in norms.table], norms.moments
        )
    return BaseResult(generator.cpu().eval(), metrics, norms)


def save_base(
    path: Path | str, result: BaseResult, params: BaseParams, *, dtype: str = "float32"
) -> str:
    """Write the base as an ordinary generator file; return its sha256.

    :func:`stylenet.model_file.load_generator` loads it like any style's generator. Its
    ``train_params`` are :attr:`BaseParams.train_params` (valid :class:`TrainParams`, what
    an adaptation starts from); its metrics say ``kind: "base"`` and carry the
    :class:`BaseParams` (``base_params``) and the paintings' sha256s.
    """
    metrics = {**result.metrics, "kind": KIND, "base_params": params.to_dict()}
    settings = params.train_params
    return save_generator(
        path,
        result.generator,
        train_params=settings.to_dict(),
        lossnet=settings.resolved()["lossnet"],
        metrics=metrics,
        dtype=dtype,
    )


__all__ = [
    "BaseParams",
    "BaseProgress",
    "BaseResult",
    "fingerprint",
    "meta_step_size",
    "painting_index",
    "save_base",
    "train_base",
]
