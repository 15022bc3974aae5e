"""The start-up calibration's memory measurement: the peak RSS of what runs after a reset."""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest

from service.runtime import calibration

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _touched(size: int) -> mmap.mmap:
    """``size`` bytes of fresh anonymous memory, every page written (new resident pages).

    Not ``np.ones``: in a process that freed memory before (an xdist worker at 1.8 GB),
    the allocator may hand back pages still resident, and RSS does not grow (CI did).
    """
    memory = mmap.mmap(-1, size)
    np.frombuffer(memory, dtype=np.uint8)[:] = 1
    return memory


def test_the_peak_is_reset_and_counts_what_is_touched_after() -> None:
    _touched(64 * 2**20).close()  # a peak before the reset...
    before = calibration._rss_before_peak()
    assert before is not None
    assert calibration._status_bytes("VmHWM") < before + 32 * 2**20  # ...forgotten by it
    touched = _touched(64 * 2**20)  # 64 MiB, every page written
    peak = calibration._status_bytes("VmHWM")
    assert peak is not None and peak - before >= 60 * 2**20
    assert touched[-1] == 1
    touched.close()


def test_no_such_status_field_is_none() -> None:
    assert calibration._status_bytes("NoSuchField") is None
