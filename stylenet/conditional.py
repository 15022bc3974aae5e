"""A base generator by joint training: shared convolutions, per-painting normalization.

Conditional instance norm (Dumoulin, Shlens, Kudlur 2017, "A Learned Representation for
Artistic Style"): one generator learns many paintings at once; every convolution is
shared, and each painting owns only the γ/β of the instance-norm layers. What makes it
a base: the convolutions have learnt to draw any photo in painterly strokes, so a new
painting needs mostly new γ/β (a few kilobytes), which a few hundred steps find
(:attr:`stylenet.params.TrainParams.norm_first_steps` trains only them first).

The loop (:func:`joint_loop`) is the other method of :func:`stylenet.base.train_base`
(``BaseParams.method = "joint"``). Outer step ``i`` takes painting ``i``'s γ/β (and
their Adam moments) into the working generator, runs ``inner_steps`` ordinary training
steps (:class:`stylenet.step.TrainStep`: the convolutions' Adam persists across
paintings), and stores the painting's γ/β back. The learning rate decays on a cosine
over the run. Everything of outer step ``i`` is a pure function of ``(seed, i)``, and
the checkpoint holds the weights, every painting's γ/β and all Adam moments, so a
resumed run reaches exactly the weights of an uninterrupted one on CPU.

The result is written as an ordinary generator file: the shared convolutions with the
**mean** γ/β over the paintings (where a new painting starts), and beside it the table
of every painting's γ/β (:func:`save_norm_table`), for blending and for inspection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load, load_file, save
from torch import nn

from .errors import ModelFileError
from .files import atomic_write_bytes
from .losses import PerceptualLoss
from .multistyle import norm_parameter_names
from .step import TrainStep

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "joint-checkpoint.safetensors"
_ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")


def joint_learning_rate(lr: float, outer_step: int, outer_steps: int) -> float:
    """Return the learning rate of ``outer_step``: a cosine from ``lr`` to 10 % of it."""
    progress = min(1.0, outer_step / max(1, outer_steps))
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass
class JointState:
    """What a joint run carries from step to step (and what its checkpoint holds).

    Attributes:
        table: per painting, its γ/β by parameter name (float32, on the device).
        moments: per painting, the Adam state of its γ/β by parameter name.
    """

    table: list[dict[str, torch.Tensor]]
    moments: list[dict[str, dict[str, Any]]]


def _initial_state(generator: nn.Module, names: Sequence[str], count: int) -> JointState:
    params = dict(generator.named_parameters())
    table = [{n: params[n].detach().clone() for n in names} for _ in range(count)]
    return JointState(table, [{} for _ in range(count)])


def mean_norms(state: JointState) -> dict[str, torch.Tensor]:
    """Return the γ/β averaged over the paintings: where a new painting starts."""
    names = state.table[0].keys()
    return {n: torch.stack([row[n] for row in state.table]).mean(0) for n in names}


def _flatten_adam(prefix: str, moments: dict[str, Any], into: dict[str, torch.Tensor]) -> None:
    for key in _ADAM_KEYS:
        if key in moments:
            value = moments[key]
            tensor = value if torch.is_tensor(value) else torch.tensor(float(value))
            into[f"{prefix}.{key}"] = tensor.detach().cpu().contiguous()


def _unflatten_adam(prefix: str, tensors: dict[str, torch.Tensor], device: torch.device) -> dict:
    found = {k: tensors[f"{prefix}.{k}"] for k in _ADAM_KEYS if f"{prefix}.{k}" in tensors}
    if not found:
        return {}
    # Adam keeps ``step`` on the CPU unless it is capturable; the moments on the device.
    return {k: (v if k == "step" else v.to(device)) for k, v in found.items()}


def save_checkpoint(
    folder: Path,
    generator: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: JointState,
    outer_step: int,
    print_: str,
) -> None:
    """Write the weights, every painting's γ/β and every Adam moment (atomically)."""
    names = set(state.table[0])
    tensors: dict[str, torch.Tensor] = {}
    for name, param in generator.named_parameters():
        tensors[f"weights.{name}"] = param.detach().cpu().contiguous()
        if name not in names:
            _flatten_adam(f"adam.{name}", optimizer.state.get(param, {}), tensors)
    for index, (row, moments) in enumerate(zip(state.table, state.moments, strict=True)):
        for name, value in row.items():
            tensors[f"table.{index}.{name}"] = value.detach().cpu().contiguous()
            _flatten_adam(f"moments.{index}.{name}", moments.get(name, {}), tensors)
    metadata = {"outer_step": str(outer_step), "fingerprint": print_}
    atomic_write_bytes(folder / CHECKPOINT_NAME, save(tensors, metadata=metadata))


def read_checkpoint(
    path: Path, print_: str, *, tensors: bool = True
) -> tuple[int, dict[str, torch.Tensor]]:
    """Read a base checkpoint: the outer step it resumes at and its tensors.

    An absent or unreadable file gives ``(0, {})`` (a warning for the latter): the run
    starts over. ``tensors=False`` reads only the header.

    Raises:
        ModelFileError: the checkpoint was made with other parameters or paintings.
    """
    if not path.is_file():
        return 0, {}
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        outer_step = int(metadata["outer_step"])
        loaded = load_file(str(path)) if tensors else {}
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable base checkpoint %s: %s", path, exc)
        return 0, {}
    if metadata.get("fingerprint") != print_:
        raise ModelFileError(
            f"base checkpoint {path} was made with other parameters or paintings; "
            "delete it to start over"
        )
    return outer_step, loaded


def peek_outer_step(folder: Path, print_: str) -> int:
    """Return the outer step a joint checkpoint in ``folder`` resumes at (0: none)."""
    return read_checkpoint(folder / CHECKPOINT_NAME, print_, tensors=False)[0]


def load_checkpoint(
    folder: Path,
    generator: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: JointState,
    print_: str,
    device: torch.device,
) -> int:
    """Load a checkpoint from ``folder`` in place; return the outer step to resume at."""
    path = folder / CHECKPOINT_NAME
    outer_step, tensors = read_checkpoint(path, print_)
    if not outer_step:
        return 0
    names = set(state.table[0])
    params = dict(generator.named_parameters())
    try:
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(tensors[f"weights.{name}"])
                if name not in names:
                    moments = _unflatten_adam(f"adam.{name}", tensors, device)
                    if moments:
                        optimizer.state[param] = moments
            for index, row in enumerate(state.table):
                for name in row:
                    row[name].copy_(tensors[f"table.{index}.{name}"])
                    moments = _unflatten_adam(f"moments.{index}.{name}", tensors, device)
                    if moments:
                        state.moments[index][name] = moments
    except (KeyError, RuntimeError) as exc:
        raise ModelFileError(f"base checkpoint {path} does not fit the generator: {exc}") from None
    return outer_step


@dataclass(frozen=True)
class JointRun:
    """The fixed inputs of :func:`joint_loop` (built by :func:`stylenet.base.train_base`)."""

    step: TrainStep
    targets: Sequence[dict[str, torch.Tensor]]
    batches: Any  # an iterator of (index, batch), positioned at the resume point
    order: Callable[[int], int]  # outer step → painting index
    outer_steps: int
    inner_steps: int
    lr: float


def joint_loop(
    run: JointRun,
    start: int,
    folder: Path | None,
    checkpoint_every: int,
    print_: str,
    report: Callable[[int, int, float, float], None],
) -> tuple[JointState, float]:
    """Run outer steps ``start``…``outer_steps - 1``; return the state and the last loss.

    ``report(done, painting_index, mean_inner_loss, lr)`` is called after every outer
    step (it may raise to abort; the last checkpoint stays for a resume). On return the
    generator holds the mean γ/β (:func:`mean_norms`).
    """
    step = run.step
    generator, optimizer, device = step.generator, step.optimizer, step.device
    names = norm_parameter_names(generator)
    params = dict(generator.named_parameters())
    state = _initial_state(generator, names, len(run.targets))
    if folder is not None and start:
        loaded = load_checkpoint(folder, generator, optimizer, state, print_, device)
        if loaded != start:
            raise ModelFileError(f"base checkpoint in {folder} changed while resuming")
        log.info("resuming the joint base from outer step %d", start)
    last_loss = float("nan")
    for outer in range(start, run.outer_steps):
        index = run.order(outer)
        step.loss.style_targets = run.targets[index]
        row, moments = state.table[index], state.moments[index]
        with torch.no_grad():
            for name in names:
                params[name].copy_(row[name])
        for name in names:
            # The painting's own Adam moments for its γ/β; Adam fills an empty dict in place.
            optimizer.state[params[name]] = moments.setdefault(name, {})
        lr = joint_learning_rate(run.lr, outer, run.outer_steps)
        total = torch.zeros((), device=device)
        for _ in range(run.inner_steps):
            _, batch = next(run.batches)
            total += step(batch, lr).total.detach().float()
        with torch.no_grad():
            for name in names:
                row[name].copy_(params[name])
        done = outer + 1
        last_loss = float(total) / run.inner_steps
        if folder is not None and checkpoint_every and done % checkpoint_every == 0:
            save_checkpoint(folder, generator, optimizer, state, done, print_)
        report(done, index, last_loss, lr)
    if folder is not None and start < run.outer_steps:
        save_checkpoint(folder, generator, optimizer, state, run.outer_steps, print_)
    with torch.no_grad():
        for name, value in mean_norms(state).items():
            params[name].copy_(value)
    return state, last_loss


def base_state_from_checkpoint(path: Path | str) -> dict[str, torch.Tensor]:
    """Return the base a joint checkpoint holds so far: its convolutions, the mean γ/β.

    For measuring a run that is still going (``bench/adapt.py --base CHECKPOINT``).
    """
    tensors = load_file(str(path))
    weights = {
        k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")
    }
    rows: dict[str, list[torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("table."):
            name = key.split(".", 2)[2]
            rows.setdefault(name, []).append(value)
    for name, values in rows.items():
        weights[name] = torch.stack(values).mean(0)
    return weights


def table_from_checkpoint(path: Path | str) -> list[dict[str, torch.Tensor]]:
    """Return every painting's γ/β that a joint checkpoint holds so far (in painting order)."""
    rows: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        if key.startswith("table."):
            _, index, name = key.split(".", 2)
            rows.setdefault(int(index), {})[name] = value
    return [rows[i] for i in sorted(rows)]


def rows_from_table(data: bytes) -> list[dict[str, torch.Tensor]]:
    """Return the rows of a table written by :func:`save_norm_table` (float32, in order).

    Raises:
        SafetensorError: not a safetensors file.
        ValueError: keys that are not ``{index}.{name}``, or rows with other names.
    """
    rows: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load(data).items():
        index, _, name = key.partition(".")
        if not index.isdigit() or not name:
            raise ValueError(f"not a γ/β table key: {key!r}")
        rows.setdefault(int(index), {})[name] = value.float()
    ordered = [rows[i] for i in sorted(rows)]
    if not ordered or any(row.keys() != ordered[0].keys() for row in ordered):
        raise ValueError("the rows of the γ/β table differ")
    return ordered


def load_norm_table(path: Path | str) -> tuple[list[dict[str, torch.Tensor]], list[str]]:
    """Read a table written by :func:`save_norm_table`: the rows and the paintings' sha256."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    digests = [d for d in metadata.get("sha256", "").split(",") if d]
    return rows_from_table(Path(path).read_bytes()), digests


def with_norms(
    state: dict[str, torch.Tensor],
    rows: Sequence[dict[str, torch.Tensor]],
    weights: Sequence[float],
) -> dict[str, torch.Tensor]:
    """Return ``state`` with its γ/β replaced by the weighted sum of ``rows``' (a blend).

    With one row and weight 1 it is that painting's γ/β: a new painting near it by its
    Gram statistics starts from the base's convolutions with the neighbour's γ/β.
    """
    out = dict(state)
    for name in rows[0]:
        out[name] = sum(w * row[name].float() for w, row in zip(weights, rows, strict=True))
    return out


@torch.no_grad()
def rank_norms(
    generator: nn.Module,
    rows: Sequence[dict[str, torch.Tensor]],
    loss: PerceptualLoss,
    batch: torch.Tensor,
) -> list[float]:
    """Return the training loss on ``batch`` of ``generator`` with each row's γ/β.

    ``loss`` holds the new painting's style targets: the row with the lowest loss is
    where adapting to it starts (the painting of the base whose γ/β already paint the
    new one best, judged by the objective the training then minimizes — no signature
    of the base's paintings needs to ship). ``generator`` is left with its own γ/β.
    """
    params = dict(generator.named_parameters())
    saved = {name: params[name].detach().clone() for name in rows[0]}
    device = next(generator.parameters()).device
    batch = batch.to(device)
    losses = []
    try:
        for row in rows:
            for name, value in row.items():
                params[name].copy_(value)
            losses.append(float(loss(generator(batch), batch).total))
    finally:
        for name, value in saved.items():
            params[name].copy_(value)
    return losses


def save_norm_table(
    path: Path | str, state: JointState, paintings: Sequence[str], digests: Sequence[str]
) -> None:
    """Write every painting's γ/β (``{index}.{name}``) with the paintings in the metadata."""
    tensors = {
        f"{index}.{name}": value.detach().cpu().contiguous()
        for index, row in enumerate(state.table)
        for name, value in row.items()
    }
    metadata = {"paintings": ",".join(paintings), "sha256": ",".join(digests)}
    atomic_write_bytes(Path(path), save(tensors, metadata=metadata))


__all__ = [
    "CHECKPOINT_NAME",
    "JointRun",
    "JointState",
    "base_state_from_checkpoint",
    "joint_learning_rate",
    "joint_loop",
    "load_norm_table",
    "mean_norms",
    "norm_parameter_names",
    "peek_outer_step",
    "rank_norms",
    "read_checkpoint",
    "rows_from_table",
    "save_norm_table",
    "table_from_checkpoint",
    "with_norms",
]
