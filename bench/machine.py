"""The machine (and its load) a benchmark's figures come from, for its JSON."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from stylenet.inference import cpu_has_native_bf16


def machine(**extra: Any) -> dict[str, Any]:
    """Return CPU model, cores, torch threads, bf16, GPU, versions and load, plus ``extra``."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "bf16": cpu_has_native_bf16(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
        **extra,
    }
