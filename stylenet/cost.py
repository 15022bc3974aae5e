"""What a training costs: floating-point operations per step, and seconds on a measured device.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` over the real
generator and loss network built on the ``meta`` device (shapes only: no memory, no
arithmetic, a fraction of a second), so they follow any ``TrainParams`` — architecture,
width, preset, layers, sizes — without a table to keep in sync.

A device's speed is a :class:`DeviceSpeed`: effective GFLOP/s of training steps, a
fixed cost per step (kernel launches, small-tensor overheads that do not scale with
pixels) and a fixed cost per run (loss-network load, style targets, evaluation).
:func:`calibrate` measures one by timing a few real steps at two sizes;
:func:`estimate_seconds` turns params into seconds with it.
"""

from __future__ import annotations

import functools
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
            weights[f"{name}.weight"] = torch.randn(out_channels, in_channels, 3, 3) * 0.01
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
    """FLOPs of the held-out quality report of a run of ``params`` (all its steps)."""
    from .train import yardstick_steps  # local: train imports this module's neighbours

    steps = yardstick_steps(params, params.holdout)
    return steps * params.holdout * _flops(_cost_key(params), params)[1]


@dataclass(frozen=True)
class DeviceSpeed:
    """How fast one device trains (see the module docstring).

    Attributes:
        device: what was measured (``cpu``, or the GPU's name).
        gflops_per_s: effective GFLOP/s of training steps.
        step_overhead_s: seconds per step that do not scale with the arithmetic.
        run_overhead_s: seconds per run besides the steps (setup, evaluation, publish).
        measured_at: Unix time of the measurement.
        source: ``calibration`` or ``runs`` (refined from finished trainings).
    """

    device: str
    gflops_per_s: float
    step_overhead_s: float
    run_overhead_s: float
    measured_at: float
    source: str = "calibration"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what the worker publishes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceSpeed:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)

    def step_seconds(self, params: TrainParams) -> float:
        """Seconds per training step of ``params`` on this device."""
        return self.step_overhead_s + step_flops(params) / (self.gflops_per_s * 1e9)


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
    report = yardstick_flops(params) / (speed.gflops_per_s * 1e9)
    return speed.run_overhead_s + steps + report


def _time_steps(params: TrainParams, device: torch.device, steps: int) -> float:
    """Median seconds per step of ``steps`` real steps (after one warm-up step)."""
    from .step import StepOptions, TrainStep

    generator = build_generator(params.generator_config).to(device).train()
    with torch.device(device):
        loss = _shaped_loss(params)
    loss.set_style(torch.rand(1, 3, params.style_size, params.style_size, device=device) * 255)
    optimizer = torch.optim.Adam(generator.parameters(), lr=params.lr)
    step = TrainStep(generator, loss, optimizer, device, StepOptions.for_device(device))
    batch = torch.rand(params.batch_size, 3, params.image_size, params.image_size) * 255
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        step(batch, params.lr).total.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    times = sorted(times[1:])
    return times[len(times) // 2]


def calibrate(
    device: torch.device | str,
    *,
    sizes: tuple[int, int] = (64, 128),
    steps: int = 3,
    run_overhead_s: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> DeviceSpeed:
    """Measure ``device``'s training speed with real steps of the default recipe.

    Steps are timed at two image sizes (batch 4): the line through (FLOPs, seconds) gives
    the effective GFLOP/s (its slope) and the per-step overhead (its intercept).

    Args:
        device: where to measure.
        sizes: the two image sizes.
        steps: timed steps per size (after one warm-up step each).
        run_overhead_s: the fixed cost per run to assume until runs refine it.
        clock: wall clock for ``measured_at``.
    """
    device = torch.device(device)
    points = []
    for size in sizes:
        params = TrainParams(image_size=size, style_size=size)
        points.append((step_flops(params), _time_steps(params, device, steps)))
    (f1, t1), (f2, t2) = points
    slope = (t2 - t1) / (f2 - f1) if t2 > t1 else t2 / f2
    overhead = max(0.0, t2 - slope * f2)
    name = str(device) if device.type != "cuda" else torch.cuda.get_device_name(device)
    return DeviceSpeed(name, 1e-9 / slope, overhead, run_overhead_s, clock())


__all__ = [
    "SPEED_KEY",
    "DeviceSpeed",
    "calibrate",
    "estimate_seconds",
    "step_flops",
    "yardstick_flops",
]
