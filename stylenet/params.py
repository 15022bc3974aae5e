"""Training parameters: ONE strict schema for the CLI, the worker, the service and OpenAPI.

:class:`TrainParams` is a frozen pydantic dataclass in strict mode: types are checked
first and never coerced (``1.5`` or ``"abc"`` is not an int, ``true`` is not a number),
numbers must be finite, integers are bounded (a 5,000-digit seed is refused), unknown
keys are refused, and only then ranges and cross-field rules apply. Every failure
surfaces as :class:`~stylenet.errors.InvalidParams` naming the field, which the service
answers with 422. The JSON schema of the same class is the ``TrainParams`` schema of the
API's OpenAPI document (:func:`json_schema`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass

from .errors import InvalidParams
from .generators import ARCHITECTURES, NORMS, GeneratorConfig
from .losses import PRESETS
from .lossnet import SOURCES
from .vgg import layer_names

LR_SCHEDULES = ("constant", "cosine", "step")
#: Loss-network weight sources a run may name: the known sources plus the two names
#: ``stylize lossnet fetch --source file`` registers. Names, never paths.
LOSSNETS: tuple[str, ...] = (*SOURCES, "file-vgg16", "file-vgg19")
#: The web page's effort levels are bundles of other parameters, not loss presets; a
#: client that sends one as ``preset`` is told so (and what they stand for).
PAGE_PRESETS = {
    "fast": {"iterations": 600, "image_size": 128, "width": 0.5, "batch_size": 2},
    "balanced": {"iterations": 2000, "image_size": 256},
    "quality": {"iterations": 6000, "image_size": 256, "style_size": 384},
}
#: Largest seed: what ``torch.manual_seed`` takes as a signed 64-bit value.
MAX_SEED = 2**63 - 1

# Literal[tuple] is Literal[*tuple] at run time: the enums follow their source of truth.
Arch = Literal[ARCHITECTURES]  # type: ignore[valid-type]
Norm = Literal[NORMS]  # type: ignore[valid-type]
Preset = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
LrSchedule = Literal[LR_SCHEDULES]  # type: ignore[valid-type]
LossNet = Literal[LOSSNETS]  # type: ignore[valid-type]
# Strict per type rather than per model, so a plain dict still validates into the class:
# no str -> number, float -> int or bool -> number coercion (an int is a valid float).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Weight = Annotated[float, Strict(), Field(ge=0)]
Layers = Annotated[
    dict[Annotated[str, Strict(), Field(max_length=16)], Weight], Field(max_length=32)
]

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, title="TrainParams")


@dataclass(frozen=True, config=_CONFIG)
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
            quality score r is measured against (:mod:`stylenet.score`), after the style
            is published; the same for every style whatever its training length (the
            reference is the default, 200); 0 disables the score.
        init: where the run starts (:mod:`stylenet.warmstart`): ``auto`` (a retrain
            continues from the style's current version; else the base generator of
            this shape; else the nearest registered style by its Gram statistics; else
            scratch), ``scratch``, ``base``, or a style id.
        norm_first_steps: the first steps train only the instance-norm layers' γ/β, the
            convolutions frozen (adapting a conditional-instance-norm base,
            :mod:`stylenet.conditional`: its convolutions already draw; a painting is
            mostly its γ/β); 0 trains everything from the first step; None (the
            default): the base's measured recipe when the run starts from a base that
            ships its γ/β table, else 0.
    """

    arch: Arch = Field("residual", description="Generator architecture")
    width: Float = Field(1.0, ge=0.125, le=4.0, description="Channel multiplier")
    norm: Norm = Field("instance", description="Normalization layers")
    scales: Int = Field(5, ge=1, le=8, description="Pyramid levels (multiscale)")
    preset: Preset = Field("ulyanov", description="Loss recipe")
    lossnet: LossNet | None = Field(None, description="Loss-network weights (preset's)")
    image_size: Int = Field(256, ge=32, le=1024, description="Content crop side, px")
    style_size: Int = Field(256, ge=32, le=2048, description="Style image longer side, px")
    iterations: Int = Field(2000, ge=1, le=200_000, description="Optimizer steps")
    batch_size: Int = Field(4, ge=1, le=64, description="Content crops per step")
    lr: Float = Field(1e-3, gt=0, le=1.0, description="Adam learning rate")
    lr_schedule: LrSchedule = Field("cosine", description="Learning-rate decay")
    content_weight: Weight | None = Field(None, description="Default: the preset's")
    style_weight: Weight | None = Field(None, description="Default: the preset's")
    tv_weight: Weight | None = Field(None, description="Default: the preset's")
    content_layers: Layers | None = Field(None, description="relu layer → weight")
    style_layers: Layers | None = Field(None, description="relu layer → weight")
    seed: Int = Field(0, ge=0, le=MAX_SEED, description="Initialization and crop order")
    holdout: Int = Field(4, ge=0, le=100, description="Photos kept out for evaluation")
    checkpoint_every: Int = Field(200, ge=0, le=1_000_000, description="0 disables")
    progress_every: Int = Field(10, ge=1, le=1_000_000, description="Iterations per report")
    num_workers: Int = Field(0, ge=0, le=32, description="Crop-loading processes")
    yardstick_steps: Int = Field(200, ge=0, le=10_000, description="0 disables the score")
    init: Annotated[str, Strict(), Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = Field(
        "auto", description="Start: auto, scratch, base, or a style id"
    )
    norm_first_steps: Int | None = Field(
        None, ge=0, le=200_000, description="First steps that train only the norms' γ/β"
    )

    @field_validator("preset", mode="before")
    @classmethod
    def _not_a_page_preset(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in PAGE_PRESETS:
            bundle = PAGE_PRESETS[value.lower()]
            raise ValueError(
                f"{value!r} is the web page's effort level, not a loss preset; "
                f"use one of {list(PRESETS)} and send its parameters instead: {bundle}"
            )
        return value

    def __post_init__(self) -> None:
        # Cross-field rules, after every field has its type and range. Layers are checked
        # against the network actually used (an explicit lossnet wins).
        if self.norm_first_steps and self.norm != "instance":
            raise InvalidParams("norm_first_steps", "needs norm 'instance' (γ/β to train)")
        depth = 16 if (self.lossnet or self.loss_preset.source).endswith("16") else 19
        valid = set(layer_names(depth))
        for name in ("content_layers", "style_layers"):
            layers = getattr(self, name)
            if layers is not None:
                if not layers:
                    raise InvalidParams(name, "must name at least one layer")
                bad = [k for k in layers if k not in valid or not k.startswith("relu")]
                if bad:
                    raise InvalidParams(
                        name, f"unknown layers {bad}; use relu layers of VGG{depth}"
                    )

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
    def from_dict(cls, data: Any) -> TrainParams:
        """Validate a decoded JSON object (or any mapping) into params.

        Raises:
            InvalidParams: not an object, an unknown key, a wrong type, a non-finite
                number, an out-of-range value or an inconsistent combination; ``field``
                names the first offending parameter.
        """
        if not isinstance(data, dict):
            raise InvalidParams("params", "must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InvalidParams(unknown[0], f"unknown parameter; known: {sorted(_FIELDS)}")
        try:
            return _ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise _invalid(exc) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainParams:
        """Parse and validate a JSON document in one step (bounded nesting, no NaN).

        Raises:
            InvalidParams: not JSON, or as :meth:`from_dict`.
        """
        try:
            return _ADAPTER.validate_json(text)
        except ValidationError as exc:
            raise _invalid(exc) from None


def _invalid(exc: ValidationError) -> InvalidParams:
    """Return the first error of ``exc`` as :class:`InvalidParams` naming its field."""
    first = exc.errors(include_url=False, include_input=False)[0]
    original = first.get("ctx", {}).get("error")
    if isinstance(original, InvalidParams):  # a cross-field rule of __post_init__
        return original
    loc = [str(p) for p in first.get("loc", ())]
    field = ".".join(loc) or "params"
    message = str(first.get("msg", "invalid"))
    if first.get("type") == "unexpected_keyword_argument":
        message = f"unknown parameter; known: {sorted(_FIELDS)}"
    # A ValueError raised by a validator arrives as "Value error, <text>".
    return InvalidParams(field, message.removeprefix("Value error, "))


_ADAPTER: TypeAdapter[TrainParams] = TypeAdapter(TrainParams)
_FIELDS = tuple(f.name for f in dataclasses.fields(TrainParams))


def json_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """Return the JSON schema of :class:`TrainParams` (what the API documents)."""
    schema = _ADAPTER.json_schema(ref_template=ref_template)
    # The class docstring is written for Python readers; API readers get one line.
    schema["description"] = (
        "Training parameters; every field is optional (defaults shown). Types are strict "
        "(no string or float where an integer is expected), numbers finite, unknown keys "
        "refused: each violation is a 422 naming the field."
    )
    return schema
