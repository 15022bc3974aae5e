"""The training device, resolved inside the work horse (never in the worker's parent)."""

from __future__ import annotations

import torch

from stylenet.devices import pick_device
from stylenet.errors import DeviceUnavailable as StylenetDeviceUnavailable

from .errors import DeviceUnavailable


def resolve_device(setting: str) -> torch.device:
    """Turn ``STYLIZE_DEVICE`` into a device; runs in the work horse (initializes CUDA).

    Raises:
        DeviceUnavailable: CUDA, or that GPU, is not present.
    """
    try:
        device = pick_device(setting)
    except StylenetDeviceUnavailable as exc:
        raise DeviceUnavailable(f"STYLIZE_DEVICE={setting} but {exc}") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


__all__ = ["resolve_device"]
