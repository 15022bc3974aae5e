"""Start-up calibration of time-aware admission: one reference forward on the device.

Time-aware admission (:mod:`service.runtime.pace`) prices a request by the seconds per
FLOP its lane has measured. Before any request has run there is nothing measured, and a
request that alone takes longer than its deadline (a 2048×1536 photo on a 2-core CPU)
would be admitted and end in a 504. So the warm-up times one forward of a reference
generator (the default structure, the demo styles'; its weights do not change its
speed) at ``pace_calibration_side``² on the device, after a tiny one that pays the
one-off costs (thread pools, kernel selection), and seeds the normal lane's rate with
it; the first real forward of that size class replaces it. 512² is large enough to
have outgrown the caches as a photo does (a 256² forward costs less per FLOP than a
2048×1536 one) and takes seconds on a CPU, milliseconds on a GPU.

On a CPU the same forward also measures the host memory it takes (the peak RSS over the
RSS before it, ``/proc/self/status``, the peak reset through ``/proc/self/clear_refs``)
against the bytes :mod:`stylenet.footprint` traces for it: their ratio is this host's
slack (``InferenceRuntime.host_slack``), which prices every CPU forward's memory for the
memory budget. Below 256² fixed costs (weights, kernel scratch)
would inflate it, so smaller calibrations measure time only.

The figures are kept for the process (one per device, dtype, thread count and side): an
app started again in the same process (the in-process tests) does not measure again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from stylenet import GeneratorConfig, build_generator, stylize_tensor
from stylenet.devices import wait_idle
from stylenet.footprint import forward_bytes_per_pixel, forward_flops_per_pixel

#: The smallest side whose forward's memory is measured (below, fixed costs dominate).
MIN_MEMORY_SIDE = 256


@dataclass(frozen=True)
class Reference:
    """What a reference forward measured.

    Attributes:
        flops: its FLOPs.
        seconds: its time.
        slack: host RSS it took over the bytes traced for it (None: not measured: not a
            CPU, a side under :data:`MIN_MEMORY_SIDE`, or no ``/proc``).
    """

    flops: float
    seconds: float
    slack: float | None = None


_MEASURED: dict[tuple[str, str, int, int], Reference] = {}


@torch.inference_mode()
def reference_forward(device: torch.device, side: int, dtype: torch.dtype) -> Reference:
    """Measure a ``side``² reference forward on ``device`` (its time; on a CPU its memory).

    Runs on the device thread (its torch thread count is the one measured).
    """
    key = (str(device), str(dtype), side, torch.get_num_threads())
    if key not in _MEASURED:
        config = GeneratorConfig()
        model = build_generator(config).eval().to(device)
        stylize_tensor(torch.full((1, 3, 32, 32), 128.0, device=device), model, dtype=dtype)
        image = torch.full((1, 3, side, side), 128.0, device=device)
        measure_memory = device.type == "cpu" and side >= MIN_MEMORY_SIDE
        before = _rss_before_peak() if measure_memory else None
        wait_idle(device)
        started = time.perf_counter()
        stylize_tensor(image, model, dtype=dtype)
        wait_idle(device)
        seconds = time.perf_counter() - started
        slack = None
        peak = _status_bytes("VmHWM") if before is not None else None
        if before is not None and peak is not None and peak > before:
            slack = (peak - before) / (forward_bytes_per_pixel(config, dtype) * side * side)
        flops = forward_flops_per_pixel(config) * side * side
        _MEASURED[key] = Reference(flops, seconds, slack)
    return _MEASURED[key]


def _status_bytes(field: str) -> int | None:
    """Return a ``kB`` field of ``/proc/self/status`` in bytes (None where there is none)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_before_peak() -> int | None:
    """Reset the process's peak RSS to its RSS now and return that (None: cannot)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM only (see proc(5))
    except OSError:
        return None
    return _status_bytes("VmRSS")


__all__ = ["MIN_MEMORY_SIDE", "Reference", "reference_forward"]
