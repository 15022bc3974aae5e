"""The worker's training-speed refinement from a finished run."""

from __future__ import annotations

import pytest

from stylenet import TrainParams
from stylenet.cost import DeviceSpeed, step_flops
from worker.speed import refine

PARAMS = TrainParams(iterations=100, image_size=32, style_size=32, batch_size=2, holdout=1)


def test_a_run_refines_the_curve_and_the_run_overhead() -> None:
    gflop = step_flops(PARAMS) / 1e9
    before = DeviceSpeed("cpu", ((gflop, 1.0), (700.0, 3.0)), 10.0, 0.0)
    # The run stepped at 0.25 s (8 images/s at batch 2) and spent 4 s besides.
    total = 100 * 0.25 + 4.0
    after = refine(before, PARAMS, {"images_per_s": 8.0, "resumed_from": 0}, total)
    assert after is not None and after.source == "runs"
    assert after.seconds_for(gflop) == pytest.approx(0.5, rel=1e-6)  # half way, in log space
    assert after.points[-1] == (700.0, 3.0)  # far points are kept
    assert after.run_overhead_s == pytest.approx((10.0 + 4.0) / 2)
    assert after.measured_at > before.measured_at


def test_nothing_to_refine_without_a_speed_or_a_rate() -> None:
    assert refine(None, PARAMS, {"images_per_s": 8.0}, 30.0) is None
    before = DeviceSpeed("cpu", ((1.0, 1.0),), 10.0, 0.0)
    assert refine(before, PARAMS, {"images_per_s": 0}, 30.0) is before
    finished = {"images_per_s": 8.0, "resumed_from": 100}
    assert refine(before, PARAMS, finished, 30.0) is before


def test_cheap_steps_are_timed_again_after_the_overhead_runs(monkeypatch) -> None:
    import worker.speed as speed

    # What each timing of a shape gives, in order: a contended first timing of the cheap
    # shape, a quiet second one; the expensive shape is timed once.
    timings = {(32, 4): [0.13, 0.09], (256, 4): [2.8]}
    events: list[object] = []

    def calibrate(device, *, shapes, run_overhead_s):
        (shape,) = shapes
        events.append(shape)
        return DeviceSpeed("cpu", ((float(shape[0] * shape[1]), timings[shape].pop(0)),), 0.0, 0)

    def overhead(device, settings):
        events.append("overhead")
        return 2.5

    monkeypatch.setattr(speed, "calibrate", calibrate)
    monkeypatch.setattr(speed, "measure_run_overhead", overhead)
    measured = speed.measure("cpu", ((32, 4), (256, 4)), settings=None)
    assert events == [(32, 4), (256, 4), "overhead", (32, 4)]
    assert measured.points == ((128.0, 0.09), (1024.0, 2.8))
    assert measured.run_overhead_s == 2.5 and measured.source == "calibration"
