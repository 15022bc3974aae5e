"""The training step's speed switches, the smoothed ETA, and the cost model."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from stylenet import TrainParams, build_generator
from stylenet.cost import (
    DeviceSpeed,
    calibrate,
    estimate_seconds,
    report_seconds,
    step_flops,
    yardstick_flops,
)
from stylenet.losses import LossTerms
from stylenet.speed import RateMeter
from stylenet.step import StepOptions, TrainStep
from stylenet.train import build_loss

TINY = TrainParams(
    image_size=32, style_size=32, batch_size=2, width=0.25, preset="johnson", holdout=1
)


def _step(options: StepOptions, params: TrainParams = TINY) -> TrainStep:
    torch.manual_seed(0)
    loss = build_loss(params, torch.device("cpu"), None)
    loss.set_style(torch.rand(1, 3, params.style_size, params.style_size) * 255)
    generator = build_generator(params.generator_config).train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=params.lr)
    return TrainStep(generator, loss, optimizer, torch.device("cpu"), options)


def _conv_input_dtypes(step: TrainStep) -> dict[str, set[torch.dtype]]:
    """Record the dtype each convolution computes in (autocast casts inside the op)."""
    seen: dict[str, set[torch.dtype]] = {"generator": set(), "lossnet": set()}
    for part, module in (("generator", step.generator), ("lossnet", step.loss.vgg)):
        for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
            conv.register_forward_hook(lambda _m, _i, out, part=part: seen[part].add(out.dtype))
    return seen


def test_bf16_autocast_takes_effect_and_keeps_grams_and_losses_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import stylenet.losses as losses

    grams: list[tuple[torch.dtype, torch.dtype]] = []
    real_gram = losses.gram_matrix

    def recording_gram(features: torch.Tensor) -> torch.Tensor:
        out = real_gram(features)
        grams.append((features.dtype, out.dtype))
        return out

    monkeypatch.setattr(losses, "gram_matrix", recording_gram)
    step = _step(StepOptions(autocast=torch.bfloat16))
    assert {t.dtype for t in step.loss.style_targets.values()} == {torch.float32}
    seen = _conv_input_dtypes(step)
    grams.clear()  # those of the style targets, computed in float32 outside autocast
    terms = step(torch.rand(2, 3, 32, 32) * 255, 1e-3)
    # Every convolution of both networks ran in bf16: the path is active, not a no-op.
    assert seen == {"generator": {torch.bfloat16}, "lossnet": {torch.bfloat16}}
    # The style layers' features arrive in bf16; their Grams are float32.
    assert grams == [(torch.bfloat16, torch.float32)] * len(step.loss.style_layers)
    assert {v.dtype for v in vars(terms).values()} == {torch.float32}
    # Parameters (and so Adam's state) stay float32: autocast casts inside the ops only.
    assert {p.dtype for p in step.generator.parameters()} == {torch.float32}


def test_float32_step_runs_no_bf16_and_layouts_change_nothing() -> None:
    batch = torch.rand(2, 3, 32, 32) * 255
    plain = _step(StepOptions())
    seen = _conv_input_dtypes(plain)
    reference = plain(batch, 1e-3).as_floats()
    assert seen == {"generator": {torch.float32}, "lossnet": {torch.float32}}
    for options in (
        StepOptions(output_conv_channels_last=True),
        StepOptions(generator_channels_last=True),
        StepOptions(generator_channels_last=True, lossnet_channels_last=True),
    ):
        terms = _step(options)(batch, 1e-3).as_floats()
        for key, value in reference.items():
            assert terms[key] == pytest.approx(value, rel=1e-4), (options, key)


def test_only_the_output_conv_runs_channels_last_and_close_undoes_it() -> None:
    step = _step(StepOptions(output_conv_channels_last=True))
    convs = [m for m in step.generator.modules() if isinstance(m, nn.Conv2d)]
    layouts: list[bool] = []
    for conv in convs:
        conv.register_forward_hook(
            lambda _m, args, _out: layouts.append(
                args[0].is_contiguous(memory_format=torch.channels_last)
                and not args[0].is_contiguous()
            )
        )
    output = step.generator(torch.rand(2, 3, 32, 32) * 255)
    assert layouts == [False] * (len(convs) - 1) + [True]
    assert output.is_contiguous()  # the loss network gets NCHW
    step.close()
    layouts.clear()
    step.generator(torch.rand(2, 3, 32, 32) * 255)
    assert layouts == [False] * len(convs)
    assert all(p.is_contiguous() for p in step.generator.parameters())


def test_cpu_options_follow_the_cpu_dtype_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import stylenet.step as step_module

    monkeypatch.setattr(step_module, "cpu_has_native_bf16", lambda: False)
    assert StepOptions.for_device("cpu").autocast is None
    assert StepOptions.for_device("cpu", cpu_dtype="bfloat16").autocast is torch.bfloat16
    monkeypatch.setattr(step_module, "cpu_has_native_bf16", lambda: True)
    assert StepOptions.for_device("cpu").autocast is torch.bfloat16
    assert StepOptions.for_device("cpu", cpu_dtype="float32").autocast is None
    assert StepOptions.for_device("cuda").autocast is torch.bfloat16
    with pytest.raises(ValueError):
        StepOptions.for_device("cpu", cpu_dtype="float16")


def test_content_targets_stop_at_the_content_layer() -> None:
    loss = build_loss(TINY, torch.device("cpu"), None)  # johnson: content relu2_2
    called: list[str] = []
    for name, layer in loss.vgg.layers.items():
        layer.register_forward_hook(lambda *_, name=name: called.append(name))
    features = loss.content_features(torch.rand(1, 3, 32, 32) * 255)
    assert set(features) == {"relu2_2"}
    assert called[-1] == "relu2_2"
    assert "conv3_1" not in called
    full = loss.vgg(torch.rand(1, 3, 32, 32) * 255)
    assert set(full) == set(loss.vgg.taps)


def test_rate_meter_smooths_a_noisy_rate_and_follows_a_lasting_change() -> None:
    now = [0.0]
    meter = RateMeter(half_life_s=60.0, clock=lambda: now[0])
    meter.tick(0)
    # One iteration every 3 s, but every fourth one takes 9 s (a preview, another
    # process): 4.5 s per iteration on average, while the last iteration alone says
    # 3 s or 9 s, an ETA that jumps threefold between reports.
    per_iteration = []
    for i in range(1, 201):
        now[0] += 9.0 if i % 4 == 0 else 3.0
        meter.tick(i)
        per_iteration.append(meter.eta_s(1000 - i) / (1000 - i))
    steady = per_iteration[100:]
    assert max(steady) / min(steady) < 1.15
    assert all(abs(b / a - 1) < 0.1 for a, b in itertools.pairwise(steady))
    assert sum(steady) / len(steady) == pytest.approx(4.5, rel=0.1)
    # A lasting slow-down (to 9 s per iteration) is followed within a few half-lives.
    for i in range(201, 301):
        now[0] += 9.0
        meter.tick(i)
    assert meter.eta_s(1) == pytest.approx(9.0, rel=0.1)
    assert RateMeter().eta_s(10) == math.inf
    assert meter.eta_s(0) == 0.0


def test_cost_model_scales_with_the_work_and_prices_a_run() -> None:
    small, large = TINY, replace(TINY, image_size=64)
    assert step_flops(large) == pytest.approx(4 * step_flops(small), rel=0.1)
    assert step_flops(replace(TINY, batch_size=4)) == pytest.approx(2 * step_flops(TINY), rel=0.01)
    assert yardstick_flops(replace(TINY, yardstick_steps=0)) == 0
    # Small steps run at 10 GFLOP/s, large ones at 100: interpolated log-log between.
    speed = DeviceSpeed("cpu", ((1000.0, 10.0), (1.0, 0.1)), 5.0, 0.0)
    assert speed.points == ((1.0, 0.1), (1000.0, 10.0))
    assert speed.seconds_for(0.5) == pytest.approx(0.05)
    assert speed.seconds_for(2000) == pytest.approx(20.0)
    assert speed.seconds_for(31.6227766) == pytest.approx(math.sqrt(0.1 * 10), rel=1e-6)
    assert speed.gflops_per_s == pytest.approx(100.0)
    step_s = speed.seconds_for(step_flops(TINY) / 1e9)
    # The time to ready: the score runs after the publish and is priced apart.
    expected = 5.0 + TINY.iterations * step_s
    assert estimate_seconds(TINY, speed) == pytest.approx(expected)
    assert estimate_seconds(TINY, speed, remaining=0) == pytest.approx(5.0)
    assert report_seconds(TINY, speed) > 0
    assert report_seconds(replace(TINY, yardstick_steps=0), speed) == 0
    # The reference score does not depend on the training's length or size.
    longer = replace(TINY, iterations=TINY.iterations * 100, image_size=TINY.image_size * 2)
    assert yardstick_flops(longer) == yardstick_flops(TINY) > 0
    assert DeviceSpeed.from_dict(speed.to_dict() | {"extra": 1}) == speed
    # A finished run's point replaces the one near it, half way in log space.
    refined = speed.with_point(1.1, 0.4, 7.0, 1.0)
    assert refined.points == (
        (1.1, pytest.approx(1.1 * math.sqrt(0.1 * 0.4 / 1.1))),
        (1000.0, 10.0),
    )
    assert refined.run_overhead_s == 6.0 and refined.source == "runs"


def test_calibration_measures_a_speed_curve() -> None:
    speed = calibrate("cpu", shapes=((32, 2), (48, 2)))
    assert len(speed.points) == 2
    assert all(seconds > 0 for _, seconds in speed.points)
    assert speed.points[0][0] < speed.points[1][0]
    assert speed.source == "calibration"


def test_train_step_returns_loss_terms() -> None:
    terms = _step(StepOptions.for_device("cpu", cpu_dtype="float32"))(
        torch.rand(2, 3, 32, 32) * 255, 1e-3
    )
    assert isinstance(terms, LossTerms)
    assert math.isfinite(float(terms.total.detach()))
