"""Which inference backend serves, where no measurement is needed (``STYLIZE_BACKEND``)."""

from __future__ import annotations

import torch

from stylenet.ort_backend import onnxruntime_available


def settle_backend(wanted: str, device: torch.device) -> tuple[str, str] | None:
    """Return ``(backend, reason)`` when ``wanted`` decides without timing, else None.

    None means CPU ``auto`` with onnxruntime installed: both backends are timed at start.

    Raises:
        RuntimeError: ``onnxruntime`` was asked for where it cannot run.
    """
    if wanted == "torch":
        return "torch", "STYLIZE_BACKEND=torch"
    if device.type != "cpu":
        if wanted == "onnxruntime":
            raise RuntimeError(f"STYLIZE_BACKEND=onnxruntime runs on a CPU, not {device}")
        return "torch", f"STYLIZE_BACKEND=auto on {device}: torch"
    if not onnxruntime_available():
        if wanted == "onnxruntime":
            raise RuntimeError("STYLIZE_BACKEND=onnxruntime but onnxruntime is not installed")
        return "torch", "STYLIZE_BACKEND=auto: onnxruntime is not installed"
    if wanted == "onnxruntime":
        return "onnxruntime", "STYLIZE_BACKEND=onnxruntime"
    return None
