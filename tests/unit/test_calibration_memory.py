"""The start-up calibration's memory measurement: the peak RSS of what runs after a reset."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from service.runtime import calibration

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_the_peak_is_reset_and_counts_what_is_touched_after() -> None:
    warm = np.ones(64 * 2**20, dtype=np.uint8)  # a peak before the reset...
    del warm
    before = calibration._rss_before_peak()
    assert before is not None
    assert calibration._status_bytes("VmHWM") < before + 32 * 2**20  # ...forgotten by it
    touched = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, every page written
    peak = calibration._status_bytes("VmHWM")
    assert peak is not None and peak - before >= 60 * 2**20
    assert int(touched[-1]) == 1


def test_no_such_status_field_is_none() -> None:
    assert calibration._status_bytes("NoSuchField") is None
