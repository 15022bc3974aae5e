"""Training checkpoints as safetensors (never pickles), written atomically.

A checkpoint holds the generator's state (BatchNorm running statistics included),
Adam's per-parameter state, the iteration, and the parameters that shape the
optimization; resuming with different parameters is refused. Together with batches
that are a pure function of ``(seed, iteration)`` (see :mod:`stylenet.data`), a resumed
run reaches exactly the parameters of an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .errors import ModelFileError
from .files import atomic_write_bytes
from .params import TrainParams

log = logging.getLogger(__name__)
FILE_NAME = "checkpoint.safetensors"
# Fields that do not change the optimization: a run may resume with other values.
# yardstick_steps: the held-out report after training, not the optimization itself.
_FREE_FIELDS = ("checkpoint_every", "progress_every", "num_workers", "yardstick_steps")


def fingerprint(params: TrainParams) -> str:
    """Return the JSON of the parameters that shape the optimization (resume must match)."""
    data = params.to_dict()
    for name in _FREE_FIELDS:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True)


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    params: TrainParams,
) -> Path:
    """Write ``folder/checkpoint.safetensors`` atomically and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    metadata = {
        "iteration": str(iteration),
        "params": fingerprint(params),
        "param_groups": json.dumps(state["param_groups"]),
    }
    dest = folder / FILE_NAME
    atomic_write_bytes(dest, save(tensors, metadata=metadata))
    return dest


def load_checkpoint(
    folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, params: TrainParams
) -> int:
    """Restore model and optimizer from ``folder`` if a checkpoint is there.

    Returns:
        The iteration to resume from (0 when there is no usable checkpoint).
    """
    path = folder / FILE_NAME
    if not path.is_file():
        return 0
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            metadata: dict[str, Any] = json.loads(handle.read(length))["__metadata__"]
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        return 0
    if metadata.get("params") != fingerprint(params):
        raise ModelFileError(
            f"checkpoint {path} was made with other training parameters; delete it to start over"
        )
    model.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True
    )
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(
        {"state": slots, "param_groups": json.loads(metadata["param_groups"])}
    )
    return int(metadata["iteration"])
