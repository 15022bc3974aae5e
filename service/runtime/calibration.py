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

The figure is kept for the process (one per device, dtype, thread count and side): an
app started again in the same process (the in-process tests) does not measure again.
"""

from __future__ import annotations

import time

import torch

from stylenet import GeneratorConfig, build_generator, stylize_tensor
from stylenet.devices import wait_idle
from stylenet.footprint import forward_flops_per_pixel

_MEASURED: dict[tuple[str, str, int, int], tuple[float, float]] = {}


@torch.inference_mode()
def reference_forward(device: torch.device, side: int, dtype: torch.dtype) -> tuple[float, float]:
    """Return ``(flops, seconds)`` of a ``side``² reference forward on ``device``.

    Runs on the device thread (its torch thread count is the one measured).
    """
    key = (str(device), str(dtype), side, torch.get_num_threads())
    if key not in _MEASURED:
        config = GeneratorConfig()
        model = build_generator(config).eval().to(device)
        stylize_tensor(torch.full((1, 3, 32, 32), 128.0, device=device), model, dtype=dtype)
        image = torch.full((1, 3, side, side), 128.0, device=device)
        wait_idle(device)
        started = time.perf_counter()
        stylize_tensor(image, model, dtype=dtype)
        wait_idle(device)
        seconds = time.perf_counter() - started
        _MEASURED[key] = (forward_flops_per_pixel(config) * side * side, seconds)
    return _MEASURED[key]


__all__ = ["reference_forward"]
