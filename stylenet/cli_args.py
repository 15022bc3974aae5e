"""What the ``stylize`` commands share: argument types, option builders, the one-line error.

Kept apart from :mod:`stylenet.cli` so that each command's module (:mod:`stylenet.cli`,
:mod:`stylenet.cli_apply`) can use them without importing the other.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import lossnet
from .devices import pick_device
from .errors import DeviceUnavailable, InvalidParams
from .generators import ARCHITECTURES, MIN_SIDE, NORMS
from .losses import PRESETS
from .params import LR_SCHEDULES, TrainParams
from .tiled import check_tile

_CHOICES: dict[str, Sequence[str]] = {
    "arch": ARCHITECTURES,
    "norm": NORMS,
    "preset": tuple(PRESETS),
    "lossnet": tuple(lossnet.SOURCES),
    "lr_schedule": LR_SCHEDULES,
}
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class CliError(Exception):
    """A mistake in the command line found before any work: one line, no traceback."""


def device_arg(text: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: auto, cpu, cuda or cuda:N")
    return text


def side_arg(text: str) -> int:
    """Parse a side in pixels (at least the generators' smallest)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of pixels, not {text!r}") from None
    if value < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_SIDE} pixels, not {value}")
    return value


def fraction_arg(text: str) -> float:
    """Parse a number within 0..1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number within 0..1, not {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, not {value}")
    return value


def tile_arg(text: str) -> int | str | None:
    """``--tile``: ``auto``, ``none`` or a side in pixels (at least 16)."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return check_tile(int(text))
    except (ValueError, InvalidParams) as exc:
        raise argparse.ArgumentTypeError(f"auto, none or a side ≥ 16 px, not {text!r}") from exc


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when present; a CUDA device that is not there is a one-line error."""
    try:
        return pick_device(name)
    except DeviceUnavailable as exc:
        raise CliError(f"--device {name}: {exc}; use --device cpu") from None


def check_output(path: Path, suffixes: Sequence[str], what: str) -> None:
    """Refuse an output file of an unknown type or in a folder that does not exist."""
    if path.suffix.lower() not in suffixes:
        known = ", ".join(suffixes)
        raise CliError(f"{what} {path}: unknown file type {path.suffix!r}; use {known}")
    if not path.parent.is_dir():
        raise CliError(f"{what} {path}: the folder {path.parent} does not exist")


def field_help(cls: type = TrainParams) -> dict[str, str]:
    """Return each field's meaning, from ``cls``'s docstring (one source of truth)."""
    doc = (cls.__doc__ or "").split("Attributes:", 1)[-1]
    found: dict[str, str] = {}
    names: list[str] = []
    for line in doc.splitlines():
        head = re.match(r"^\s{8}([a-z_, ]+):\s*(.*)$", line)
        if head:
            names = [n.strip() for n in head.group(1).split(",")]
            for name in names:
                found[name] = head.group(2)
        elif line.strip() and names:
            for name in names:
                found[name] += " " + line.strip()
    markup = re.compile(r"``|:[a-z]+:`~?([^`]*)`")
    return {k: markup.sub(lambda m: m.group(1) or "", v).rstrip(".") for k, v in found.items()}


def _with_default(text: str, default: object) -> str:
    if "default" not in text:
        text = f"{text} (default: {default})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_field_options(group: Any, cls: type, fields: dict[str, type]) -> None:
    """Add one option per field of ``cls``; the help and default come from the class."""
    helps, defaults = field_help(cls), cls()
    for name, kind in fields.items():
        default = getattr(defaults, name)
        shown = "the preset's" if default is None else default
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            default=None,
            choices=_CHOICES.get(name),
            metavar=None if name in _CHOICES else name.upper(),
            help=_with_default(helps.get(name, ""), shown),
        )


def add_training_io(parser: argparse.ArgumentParser, out_help: str) -> None:
    """Add what ``train`` and ``base train`` share: photos, output, checkpoints, device."""
    parser.add_argument("--content", type=Path, required=True, help="folder of content photos")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--checkpoint-dir", type=Path, help="checkpoint here; resume if one exists")
    parser.add_argument(
        "--device",
        type=device_arg,
        default="auto",
        help="auto (CUDA if present), cpu, cuda or cuda:N (default: auto)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="dtype of the saved weights (default: float32)",
    )
