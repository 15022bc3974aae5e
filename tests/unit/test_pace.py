"""service.runtime.pace: time-aware admission, on an injected clock and injected rates.

Nothing here is timed: the clock is a variable, the rate is set by observations of
made-up forwards, and the checks are on what is refused, with which figures.
"""

from __future__ import annotations

import pytest

from service.errors import Unavailable
from service.runtime.pace import Pace, ServiceRate

GFLOP = 2.0**30  # a power of two: every figure below is exact in floating point


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pace(seconds_per_gflop: float | None = 1.0, **kwargs: object) -> tuple[Pace, Clock]:
    clock = Clock()
    pace = Pace("stylize", clock=clock, **kwargs)  # type: ignore[arg-type]
    if seconds_per_gflop is not None:
        pace.rate.observe(GFLOP, seconds_per_gflop)
    return pace, clock


def test_the_rate_is_a_moving_average_and_a_warm_up_only_stands_in() -> None:
    rate = ServiceRate(weight=0.5)
    assert rate.seconds(GFLOP) is None  # nothing measured: no price
    rate.observe(GFLOP, 8.0, seed=True)  # the warm-up: slow, one-off costs
    assert rate.seconds(GFLOP) == 8.0 and rate.measured == 0
    rate.observe(2 * GFLOP, 4.0)  # the first real forward replaces it
    assert rate.seconds(GFLOP) == 2.0
    rate.observe(GFLOP, 4.0)
    assert rate.seconds(GFLOP) == 3.0  # halfway, at weight 0.5
    rate.observe(GFLOP, 100.0, seed=True)  # a later warm-up changes nothing
    rate.observe(0, 1.0)  # nor a forward of no work
    assert rate.seconds(GFLOP) == 3.0 and rate.measured == 2


def test_a_lone_request_that_alone_would_be_late_is_refused_with_a_smaller_side() -> None:
    pace, _ = _pace(seconds_per_gflop=10.0)
    # 100 s of work with 30 s to go and nothing ahead: it could never be answered in time.
    with pytest.raises(Unavailable) as refused:
        pace.check(10 * GFLOP, deadline=1030.0, timeout_s=30.0, side=2048)
    error = refused.value
    assert error.status == 503 and error.code == "would_time_out"
    assert error.fields["wait_seconds"] == 0.0 and error.fields["service_seconds"] == 100.0
    # Retrying the same image would not help: no Retry-After, but the side that fits
    # 80 % of the 30 s it has: 2048 × sqrt(24 / 100), rounded down.
    assert error.retry_after is None
    assert error.fields["max_side"] == 1003
    assert "max_side=1003" in error.message
    assert pace.holders == 0
    # One that fits its 30 s alone is admitted.
    with pace.reserve(2.5 * GFLOP, deadline=1030.0, timeout_s=30.0):
        assert pace.holders == 1
    assert pace.holders == 0 and pace.work_in_flight == 0


def test_each_size_is_priced_by_its_own_class_or_the_nearest_smaller_one() -> None:
    rate = ServiceRate(weight=0.5)
    rate.observe(GFLOP / 64, 1.0)  # a thumbnail: mostly fixed costs, 64 s per GFLOP
    rate.observe(16 * GFLOP, 32.0)  # a photo: 2 s per GFLOP
    assert rate.seconds(GFLOP / 64) == 1.0
    assert rate.seconds(16 * GFLOP) == 32.0
    # Four times the photo's work: its class has no forward yet, priced by the photo's.
    assert rate.seconds(64 * GFLOP) == 128.0
    # Between the two: the nearest smaller class (the thumbnail's), not the photo's.
    assert rate.seconds(GFLOP) == 64.0
    # Smaller than anything measured: the nearest larger class.
    assert rate.seconds(GFLOP / 1024) == 1 / 16
    # A rate with nothing measured goes by its prior (the large lane by the normal one's).
    assert ServiceRate(prior=rate).seconds(16 * GFLOP) == 32.0
    assert ServiceRate().seconds(GFLOP) is None


def test_work_held_without_admission_counts_as_work_ahead() -> None:
    pace, _ = _pace(seconds_per_gflop=1.0)
    with pace.hold(20 * GFLOP):  # a clip's frames in flight
        assert pace.ahead_seconds() == 20.0
        # 20 s ahead + 15 s: past the 30 s it has, though alone it would fit.
        with pytest.raises(Unavailable) as refused:
            pace.check(15 * GFLOP, deadline=1030.0, timeout_s=30.0)
        assert refused.value.retry_after == 5
    assert pace.holders == 0 and pace.ahead_seconds() == 0.0


def test_a_request_the_work_ahead_would_make_late_gets_503_with_when_to_retry() -> None:
    pace, clock = _pace(seconds_per_gflop=1.0)
    with pace.reserve(20 * GFLOP, deadline=1030.0, timeout_s=30.0):
        clock.now = 1002.0
        # 20 s ahead + 5 s of its own: 25 s fits the 28 s it has left.
        with pace.reserve(5 * GFLOP, deadline=1030.0, timeout_s=30.0):
            assert pace.ahead_seconds() == 25.0
            # 25 s ahead + 15 s: 40 s, past the 28 s left.
            with pytest.raises(Unavailable) as refused:
                pace.check(15 * GFLOP, deadline=1030.0, timeout_s=30.0)
    error = refused.value
    assert error.status == 503 and error.code == "would_time_out"
    assert error.fields["wait_seconds"] == 25.0
    assert error.fields["service_seconds"] == 15.0
    assert error.fields["seconds_left"] == 28.0
    # A fresh request fits once 25 - t + 15 <= 30: in 10 s.
    assert error.retry_after == 10
    assert pace.holders == 0


def test_an_image_over_the_timeout_gets_no_retry_after() -> None:
    pace, _ = _pace(seconds_per_gflop=1.0)
    with (
        pace.reserve(12 * GFLOP, deadline=1030.0, timeout_s=30.0),
        pytest.raises(Unavailable) as refused,
    ):
        pace.check(40 * GFLOP, deadline=1030.0, timeout_s=30.0)
    # It could not fit even alone: no time to retry at (a smaller image would fit).
    assert refused.value.retry_after is None
    assert "more than the 30 s a request may take" in refused.value.message


def test_the_forward_under_way_counts_for_what_is_left_of_it() -> None:
    pace, clock = _pace(seconds_per_gflop=1.0)
    with pace.reserve(20 * GFLOP, deadline=1030.0, timeout_s=30.0):
        seen: list[float | None] = []

        def forward() -> str:
            clock.now += 15.0  # the forward has run 15 of its 20 s
            seen.append(pace.ahead_seconds())
            clock.now += 5.0
            return "done"

        assert pace.measure(20 * GFLOP, forward) == "done"
        assert seen == [5.0]
    # And it was measured: 20 GFLOP in 20 s.
    assert pace.rate.seconds(GFLOP) == pytest.approx(1.0)
    assert pace.rate.measured == 2


def test_a_failed_forward_is_not_measured() -> None:
    pace, clock = _pace(seconds_per_gflop=1.0)

    def broken() -> None:
        clock.now += 0.001
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        pace.measure(50 * GFLOP, broken)
    assert pace.rate.seconds(GFLOP) == 1.0 and pace.rate.measured == 1


def test_without_a_measurement_or_when_disabled_nothing_is_refused() -> None:
    for pace, _ in (_pace(seconds_per_gflop=None), _pace(enabled=False)):
        with (
            pace.reserve(100 * GFLOP, deadline=1001.0, timeout_s=1.0),
            pace.reserve(100 * GFLOP, deadline=1001.0, timeout_s=1.0),
        ):
            assert pace.holders == 2


def test_a_refusal_reserves_nothing() -> None:
    pace, _ = _pace(seconds_per_gflop=1.0)
    with pace.reserve(29 * GFLOP, deadline=1030.0, timeout_s=30.0):
        with (
            pytest.raises(Unavailable),
            pace.reserve(29 * GFLOP, deadline=1030.0, timeout_s=30.0),
        ):
            pass  # pragma: no cover
        assert pace.holders == 1 and pace.work_in_flight == 29 * GFLOP
