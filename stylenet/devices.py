"""Device names (``auto``, ``cpu``, ``cuda``, ``cuda:N``) to torch devices, checked."""

from __future__ import annotations

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
