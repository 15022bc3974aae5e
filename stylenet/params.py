"""Training parameters: one validated, JSON-able dataclass shared by CLI, worker and service."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from .errors import InvalidParams
from .generators import ARCHITECTURES, NORMS, GeneratorConfig
from .losses import PRESETS
from .vgg import layer_names

LR_SCHEDULES = ("constant", "cosine", "step")


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise InvalidParams(name, message)


@dataclass(frozen=True)
class TrainParams:
    """How to train one style's generator. Defaults follow the paper's setup.

    Attributes:
        arch: generator architecture (``residual`` or ``multiscale``).
        width: generator channel multiplier.
        norm: ``instance`` (the paper's) or ``batch`` (ablation baseline).
        scales: pyramid levels of the multiscale generator.
        preset: loss recipe (``ulyanov``: VGG19; ``johnson``: VGG16).
        lossnet: weight source of the loss network (default: the preset's).
        image_size: side of the square random crops of content images, in pixels.
        style_size: longer side the style image is resized to before its Grams are taken.
        iterations: optimizer steps.
        batch_size: content crops per step.
        lr: Adam learning rate.
        lr_schedule: ``constant``, ``cosine`` (to 10 % of ``lr``) or ``step`` (×0.1 at 2/3).
        content_weight, style_weight, tv_weight: loss multipliers (default: the preset's).
        content_layers, style_layers: layer → weight overrides (default: the preset's).
        seed: seeds initialization and the sequence of crops; training on CPU is
            deterministic for a given seed.
        holdout: number of content images kept out of training for evaluation (at
            least one image always stays for training, so small folders keep fewer).
        checkpoint_every: iterations between checkpoints (0 disables).
        progress_every: iterations between progress reports.
        num_workers: background processes that load content crops (0 loads inline).
        yardstick_steps: Adam steps of the image optimization that the held-out photos'
            quality score r is measured against (:mod:`stylenet.yardstick`), at
            ``image_size``; capped at a tenth of the training's image passes
            (``iterations × batch_size / (10 × held-out photos)``, at least 1) so a
            short run is not dominated by its report; 0 disables the score.
    """

    arch: str = "residual"
    width: float = 1.0
    norm: str = "instance"
    scales: int = 5
    preset: str = "ulyanov"
    lossnet: str | None = None
    image_size: int = 256
    style_size: int = 256
    iterations: int = 2000
    batch_size: int = 4
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    content_weight: float | None = None
    style_weight: float | None = None
    tv_weight: float | None = None
    content_layers: dict[str, float] | None = None
    style_layers: dict[str, float] | None = None
    seed: int = 0
    holdout: int = 4
    checkpoint_every: int = 200
    progress_every: int = 10
    num_workers: int = 0
    yardstick_steps: int = 200

    def __post_init__(self) -> None:
        _check(self.arch in ARCHITECTURES, "arch", f"must be one of {ARCHITECTURES}")
        _check(self.norm in NORMS, "norm", f"must be one of {NORMS}")
        _check(self.preset in PRESETS, "preset", f"must be one of {tuple(PRESETS)}")
        _check(32 <= self.image_size <= 1024, "image_size", "must be within 32..1024")
        _check(32 <= self.style_size <= 2048, "style_size", "must be within 32..2048")
        _check(1 <= self.iterations <= 200_000, "iterations", "must be within 1..200000")
        _check(1 <= self.batch_size <= 64, "batch_size", "must be within 1..64")
        _check(0 < self.lr <= 1.0, "lr", "must be within (0, 1]")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"must be one of {LR_SCHEDULES}")
        _check(0 <= self.holdout <= 100, "holdout", "must be within 0..100")
        _check(self.checkpoint_every >= 0, "checkpoint_every", "must be ≥ 0")
        _check(self.progress_every >= 1, "progress_every", "must be ≥ 1")
        _check(0 <= self.num_workers <= 32, "num_workers", "must be within 0..32")
        _check(0 <= self.yardstick_steps <= 10_000, "yardstick_steps", "must be within 0..10000")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            _check(value is None or value >= 0, name, "must be ≥ 0")
        # Layers are checked against the network actually used (an explicit lossnet wins).
        depth = 16 if (self.lossnet or self.loss_preset.source).endswith("16") else 19
        valid = set(layer_names(depth))
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if layers is not None:
                _check(bool(layers), name, "must name at least one layer")
                bad = [k for k in layers if k not in valid or not k.startswith("relu")]
                _check(not bad, name, f"unknown layers {bad}; use relu layers of VGG{depth}")
                _check(all(w >= 0 for w in layers.values()), name, "weights must be ≥ 0")
        GeneratorConfig(self.arch, self.width, self.norm, self.scales)  # validates width/scales

    @property
    def loss_preset(self):
        """The :class:`~stylenet.losses.LossPreset` these params start from."""
        return PRESETS[self.preset]

    @property
    def generator_config(self) -> GeneratorConfig:
        """The generator structure these params train."""
        return GeneratorConfig(self.arch, self.width, self.norm, self.scales)

    def resolved(self) -> dict[str, Any]:
        """Return the effective loss settings (preset defaults filled in)."""
        p = self.loss_preset
        return {
            "lossnet": self.lossnet or p.source,
            "content_layers": self.content_layers or dict(p.content_layers),
            "style_layers": self.style_layers or dict(p.style_layers),
            "content_weight": p.content_weight
            if self.content_weight is None
            else self.content_weight,
            "style_weight": p.style_weight if self.style_weight is None else self.style_weight,
            "tv_weight": p.tv_weight if self.tv_weight is None else self.tv_weight,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict that :meth:`from_dict` turns back into equal params."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainParams:
        """Build params from a dict, rejecting unknown keys with a clear error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParams(unknown[0], f"unknown parameter; known: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidParams("params", str(exc)) from exc
