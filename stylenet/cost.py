"""What a training costs: floating-point operations per step, and seconds on a measured device.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` over the real
generator and loss network built on the ``meta`` device (shapes only: no memory, no
arithmetic, a fraction of a second), so they follow any ``TrainParams`` — architecture,
width, preset, layers, sizes — without a table to keep in sync.

A device's speed is a :class:`DeviceSpeed`: seconds per step as a function of FLOPs
per step (measured points: small steps run at a fraction of a large step's GFLOP/s)
and a fixed cost per run (loss-network load, style targets, evaluation, publish).
:func:`calibrate` measures one by timing real steps at a few sizes;
:func:`estimate_seconds` turns params into seconds with it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .generators import build_generator
from .losses import PerceptualLoss
from .params import TrainParams
from .vgg import BLOCK_CHANNELS, VGGFeatures, layer_names

#: Redis hash where training workers publish their :class:`DeviceSpeed` (JSON), one field
#: per ``<host>:<STYLIZE_DEVICE>``; the service prices trainings with the newest one.
SPEED_KEY = "stylize:train-speed"


def _shaped_loss(params: TrainParams) -> PerceptualLoss:
    """Build the loss of ``params`` with small random VGG weights, on the default device.

    Under ``torch.device("meta")`` it only has shapes (for counting FLOPs); elsewhere the
    arithmetic, not the values, is what calibration times, so no weight file is needed.
    """
    settings = params.resolved()
    depth = 16 if settings["lossnet"].endswith("16") else 19
    taps = [*settings["content_layers"], *settings["style_layers"]]
    names = layer_names(depth)
    last = max(names.index(t) for t in taps)
    weights: dict[str, torch.Tensor] = {}
    in_channels = 3
    for name in names[: last + 1]:
        if name.startswith("conv"):
            out_channels = BLOCK_CHANNELS[int(name[4]) - 1]
            # He-scaled, so activations keep their magnitude: tiny ones would turn
            # denormal in the backward pass and time the CPU's slow path instead.
            std = (2.0 / (9 * in_channels)) ** 0.5
            weights[f"{name}.weight"] = torch.randn(out_channels, in_channels, 3, 3) * std
            weights[f"{name}.bias"] = torch.zeros(out_channels)
            in_channels = out_channels
    vgg = VGGFeatures(depth, taps, weights, "caffe")
    return PerceptualLoss.from_settings(vgg, settings)


def _cost_key(params: TrainParams) -> tuple[Any, ...]:
    # Only what changes the arithmetic: weights, lr, seed etc. do not.
    settings = params.resolved()
    return (
        params.arch,
        params.width,
        params.norm,
        params.scales,
        settings["lossnet"],
        tuple(sorted(settings["content_layers"])),
        tuple(sorted(settings["style_layers"])),
        params.image_size,
        params.style_size,
        params.batch_size,
    )


@functools.lru_cache(maxsize=256)
def _flops(key: tuple[Any, ...], params: TrainParams) -> tuple[float, float]:
    del key  # the cache key; params carries the same information
    with torch.device("meta"):
        generator = build_generator(params.generator_config).train()
        loss = _shaped_loss(params)
        loss.set_style(torch.empty(1, 3, params.style_size, params.style_size))
        batch = torch.empty(params.batch_size, 3, params.image_size, params.image_size)
        with FlopCounterMode(display=False) as step:
            loss(generator(batch), batch).total.backward()
        # An image-optimization step of the yardstick: the loss of one image, backward
        # to its pixels (no generator).
        pixels = torch.empty(1, 3, params.image_size, params.image_size, requires_grad=True)
        with FlopCounterMode(display=False) as optimization:
            loss(pixels, pixels.detach()).total.backward()
    return float(step.get_total_flops()), float(optimization.get_total_flops())


def step_flops(params: TrainParams) -> float:
    """FLOPs of one training step of ``params`` (forward, loss and backward)."""
    return _flops(_cost_key(params), params)[0]


def yardstick_flops(params: TrainParams) -> float:
    """FLOPs of a style's quality score at the fixed reference (all its optimization steps)."""
    from .corpus import EVALUATION_PHOTOS
    from .score import SCORE_SIZE  # local: the score builds on the trainer

    at_score_size = dataclasses.replace(params, image_size=SCORE_SIZE)
    photos = len(EVALUATION_PHOTOS)
    return params.yardstick_steps * photos * _flops(_cost_key(at_score_size), at_score_size)[1]


@dataclass(frozen=True)
class DeviceSpeed:
    """How fast one device trains (see the module docstring).

    A CPU or GPU is far less efficient on small steps than on large ones (at 64 px the
    loss network's deep layers are 16×16 or smaller), so the speed is a curve: measured
    ``(GFLOP per step, seconds per step)`` points, interpolated log-log between them
    and extended at the edge points' GFLOP/s beyond them.

    Attributes:
        device: what was measured (``cpu``, or the GPU's name).
        points: ``[GFLOP per step, seconds per step]`` pairs, sorted by GFLOP.
        run_overhead_s: seconds per run besides the steps (setup, evaluation, publish).
        measured_at: Unix time of the measurement.
        source: ``calibration``, or ``runs`` once finished trainings refined it.
    """

    device: str
    points: tuple[tuple[float, float], ...]
    run_overhead_s: float
    measured_at: float
    source: str = "calibration"

    def __post_init__(self) -> None:
        points = tuple(sorted((float(g), float(s)) for g, s in self.points))
        if not points or any(g <= 0 or s <= 0 for g, s in points):
            raise ValueError("a device speed needs positive (GFLOP, seconds) points")
        object.__setattr__(self, "points", points)

    @property
    def gflops_per_s(self) -> float:
        """The rate of the largest measured step (the figure closest to peak)."""
        gflop, seconds = self.points[-1]
        return gflop / seconds

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-able form (what the worker publishes)."""
        return {**asdict(self), "points": [list(p) for p in self.points]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceSpeed:
        """Build from :meth:`to_dict`'s form (unknown keys are ignored)."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["points"] = tuple(tuple(p) for p in fields.get("points", ()))
        return cls(**fields)

    def seconds_for(self, gflop: float) -> float:
        """Seconds of one step of ``gflop`` GFLOP."""
        points = self.points
        if gflop <= points[0][0]:
            return gflop * points[0][1] / points[0][0]
        if gflop >= points[-1][0]:
            return gflop * points[-1][1] / points[-1][0]
        for (g1, s1), (g2, s2) in itertools.pairwise(points):
            if g1 <= gflop <= g2:
                if g2 == g1:
                    return s1
                t = (math.log(gflop) - math.log(g1)) / (math.log(g2) - math.log(g1))
                return math.exp(math.log(s1) + t * (math.log(s2) - math.log(s1)))
        raise AssertionError("unreachable")

    def step_seconds(self, params: TrainParams) -> float:
        """Seconds per training step of ``params`` on this device."""
        return self.seconds_for(step_flops(params) / 1e9)

    def with_point(
        self, gflop: float, seconds: float, run_overhead_s: float, now: float
    ) -> DeviceSpeed:
        """Blend a finished run's measurement in (its point replaces any within ±25 %)."""
        kept = [p for p in self.points if not 0.8 <= p[0] / gflop <= 1.25]
        near = [p for p in self.points if 0.8 <= p[0] / gflop <= 1.25]
        if near:  # average in log space with what was there, so one odd run moves it half way
            old = math.exp(sum(math.log(s / g) for g, s in near) / len(near))
            seconds = gflop * math.sqrt(old * seconds / gflop)
        overhead = (self.run_overhead_s + run_overhead_s) / 2
        return DeviceSpeed(self.device, (*kept, (gflop, seconds)), overhead, now, "runs")


def estimate_seconds(
    params: TrainParams, speed: DeviceSpeed, *, remaining: int | None = None
) -> float:
    """Seconds a training of ``params`` takes on the device ``speed`` describes.

    Args:
        params: the training parameters.
        speed: the device's measured speed.
        remaining: iterations still to do (default: all of them), for a run under way.
    """
    iterations = params.iterations if remaining is None else max(0, remaining)
    steps = iterations * speed.step_seconds(params)
    # The quality score runs after the style is published: not part of the time to ready.
    return speed.run_overhead_s + steps


def report_seconds(params: TrainParams, speed: DeviceSpeed) -> float:
    """Seconds of a style's quality score after its publish (the optimization steps)."""
    from .score import SCORE_SIZE  # local: the score builds on the trainer

    # Its steps are one-image passes at the score's size: priced like training steps.
    at_score_size = dataclasses.replace(params, image_size=SCORE_SIZE, batch_size=1)
    optimization = _flops(_cost_key(at_score_size), at_score_size)[1] / 1e9
    if optimization <= 0:
        return 0.0
    return yardstick_flops(params) / 1e9 / optimization * speed.seconds_for(optimization)


def _time_steps(params: TrainParams, device: torch.device, steps: int) -> float:
    """Fastest of at least ``steps`` real steps (after one warm-up step).

    The fastest, not the median: calibration runs at a worker's start, often beside the
    API warming up on the same cores, and contention only ever slows a step (a CI run saw
    a 32-px step at 0.31 s while it takes 0.03 s). Cheap steps are repeated until a
    quarter of a second has been timed (at most 10), so their minimum is a real one.
    """
    from .step import StepOptions, TrainStep

    generator = build_generator(params.generator_config).to(device).train()
    with torch.device(device):
        loss = _shaped_loss(params)
    loss.set_style(torch.rand(1, 3, params.style_size, params.style_size, device=device) * 255)
    optimizer = torch.optim.Adam(generator.parameters(), lr=params.lr)
    step = TrainStep(generator, loss, optimizer, device, StepOptions.for_device(device))
    batch = torch.rand(params.batch_size, 3, params.image_size, params.image_size) * 255
    times: list[float] = []
    while len(times) < steps + 1 or (sum(times[1:]) < 0.25 and len(times) < 11):
        started = time.perf_counter()
        step(batch, params.lr).total.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return min(times[1:])


#: (image size, batch size) of the steps :func:`calibrate` times by default: small steps
#: for short runs, up to the default recipe's 256 px batch 4.
CALIBRATION_SHAPES: tuple[tuple[int, int], ...] = ((32, 1), (32, 4), (64, 4), (128, 4), (256, 4))


def calibrate(
    device: torch.device | str,
    *,
    shapes: tuple[tuple[int, int], ...] = CALIBRATION_SHAPES,
    steps: int = 1,
    run_overhead_s: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> DeviceSpeed:
    """Measure ``device``'s training speed with real steps of the default recipe.

    A step of each ``(image size, batch size)`` is timed: the points of the speed curve.

    Args:
        device: where to measure.
        shapes: ``(image size, batch size)`` pairs to time.
        steps: timed steps per shape, at least (after one warm-up step each; the fastest
            counts, see :func:`_time_steps`).
        run_overhead_s: the fixed cost per run (see ``worker.speed.measure_run_overhead``).
        clock: wall clock for ``measured_at``.
    """
    device = torch.device(device)
    points = []
    for size, batch in shapes:
        params = TrainParams(image_size=size, style_size=size, batch_size=batch)
        points.append((step_flops(params) / 1e9, _time_steps(params, device, steps)))
    name = str(device) if device.type != "cuda" else torch.cuda.get_device_name(device)
    return DeviceSpeed(name, tuple(points), run_overhead_s, clock())


__all__ = [
    "CALIBRATION_SHAPES",
    "SPEED_KEY",
    "DeviceSpeed",
    "calibrate",
    "estimate_seconds",
    "report_seconds",
    "step_flops",
    "yardstick_flops",
]
