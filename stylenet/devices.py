"""Device names (``auto``, ``cpu``, ``cuda``, ``cuda:N``) to torch devices, checked.

:func:`pick_device` turns a name into a device where it is used. :func:`device_problem` is
the start-up check of ``STYLIZE_DEVICE`` shared by the API and the worker: a container
started with ``STYLIZE_DEVICE=cuda`` on a host whose GPU does not work (no driver, a
driver too old for the CUDA build of torch, no NVIDIA container toolkit) must say so in
one line and exit, not crash in the middle of its start-up with a traceback and be
restarted in a loop. The check never creates a CUDA context (the worker forks its jobs
after it): it asks NVML, through ``PYTORCH_NVML_BASED_CUDA_CHECK``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import torch

from .errors import DeviceUnavailable


def pick_device(name: str) -> torch.device:
    """Return the device ``name`` means; ``auto`` is CUDA when present, else the CPU.

    A CUDA device comes back with its index (``cuda:0`` for ``cuda``).

    Raises:
        DeviceUnavailable: CUDA, or that GPU, is not on this machine.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceUnavailable("this machine has no CUDA GPU")
    index = 0 if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"only {torch.cuda.device_count()} CUDA GPU(s) exist")
    return torch.device("cuda", index)


def wait_idle(device: torch.device) -> None:
    """Block until the work queued so far on ``device``'s current stream has finished.

    A blocking-sync event: the thread sleeps instead of spinning (what
    ``torch.cuda.synchronize`` and a pageable ``.cpu()`` may do), so the wait costs no
    host CPU. Needed before a tensor crosses threads. A no-op on CPU.
    """
    if device.type == "cuda":
        event = torch.cuda.Event(blocking=True)
        event.record(torch.cuda.current_stream(device))
        event.synchronize()


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Return the mixed-precision region of training and scoring (bf16 on CUDA, else none).

    Grams and losses stay float32 inside it (:func:`stylenet.losses.gram_matrix`).
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work, so a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Exit status of a process whose configuration cannot work on this host (sysexits' EX_CONFIG).
EXIT_CONFIG = 78

#: Oldest Linux driver for each CUDA major version of torch's wheels (NVIDIA's release notes).
MIN_DRIVER = {"13": "580.65.06", "12": "525.60.13", "11": "450.80.02"}

_DRIVER_RE = re.compile(r"Kernel Module\s+([0-9.]+)")


def driver_version() -> str | None:
    """Return the loaded NVIDIA kernel driver's version (``None``: no driver loaded)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = _DRIVER_RE.search(text)
    return match.group(1) if match else "unknown"


def device_problem(setting: str) -> str | None:
    """Why ``setting`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) cannot work here, or ``None``.

    ``auto`` and ``cpu`` always work. For CUDA the answer names the driver version and the
    CUDA version torch was built for, the two things an operator compares.
    """
    if not setting.startswith("cuda"):
        return None
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # no context before fork
    import torch

    built = torch.version.cuda
    driver = driver_version()
    facts = (
        f"NVIDIA driver {driver or 'not loaded'}, torch {torch.__version__} built for CUDA {built}"
    )
    if built is None:
        return f"STYLIZE_DEVICE={setting} but this torch is a CPU-only build ({facts})"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return (
            f"STYLIZE_DEVICE={setting} but no usable GPU ({facts}); CUDA {built} needs "
            f"driver >= {MIN_DRIVER.get(built.split('.')[0], '?')} and containers need the "
            "NVIDIA container toolkit"
        )
    _, _, index = setting.partition(":")
    if index and int(index) >= count:
        return f"STYLIZE_DEVICE={setting} but only {count} GPU(s) are visible ({facts})"
    return None


__all__ = [
    "EXIT_CONFIG",
    "MIN_DRIVER",
    "autocast",
    "device_problem",
    "driver_version",
    "pick_device",
    "synchronize",
    "wait_idle",
]
