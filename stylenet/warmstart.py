"""Where a training starts: from scratch, from a base generator, or from another style.

``TrainParams.init`` says which (:func:`choose_init`):

* ``scratch``: a seeded random initialization;
* ``base``: the base generator shipped for this generator shape (``stylenet/bases/``,
  trained across many paintings to adapt in a few hundred steps, :mod:`stylenet.base`);
* a style id: that style's current weights;
* ``auto`` (the default): a retrain continues from the style's own current version;
  otherwise the base when one is installed for the shape; otherwise the registered
  style nearest to the new painting by its Gram statistics in the loss network
  (:func:`signature_distance`: the style loss of one painting's Grams against the
  other's); otherwise scratch.

A start whose generator shape differs from the run's (another width or architecture)
cannot be used: the run falls back to the next choice, and ``note`` says why. What a
run started from is recorded in its metrics (``init``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .conditional import rows_from_table
from .errors import ModelFileError
from .files import atomic_write_bytes
from .generators import GeneratorConfig
from .losses import PerceptualLoss
from .model_file import load_generator

log = logging.getLogger(__name__)

INIT_CHOICES = ("auto", "scratch", "base")
"""The named starts; any other ``init`` value is a style id."""
BASES_DIR = Path(__file__).parent / "bases"
"""Where the shipped base generators and their ``manifest.json`` live."""


@dataclass(frozen=True)
class Start:
    """A set of weights a run could start from.

    Attributes:
        kind: ``base``, ``style`` or ``continue`` (the style's own current version).
        config: the generator structure of the weights.
        load: returns the generator file's bytes.
        sha256: the bytes' expected digest (checked on load).
        style_id, version: for ``style`` and ``continue``.
        style_image: returns the style's painting (bytes), for the nearest-style search.
        name: the base's file name, for ``base``.
        load_norms, norms_sha256: a joint base's γ/β table (bytes of the safetensors
            written by :func:`stylenet.conditional.save_norm_table`) and its digest.
    """

    kind: str
    config: GeneratorConfig
    load: Callable[[], bytes] = field(repr=False)
    sha256: str
    style_id: str | None = None
    version: int | None = None
    style_image: Callable[[], bytes] | None = field(default=None, repr=False)
    name: str | None = None
    load_norms: Callable[[], bytes] | None = field(default=None, repr=False)
    norms_sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        """Return the JSON-able ``init`` record of this start."""
        info: dict[str, Any] = {"kind": self.kind, "sha256": self.sha256}
        for key in ("style_id", "version", "name"):
            if getattr(self, key) is not None:
                info[key] = getattr(self, key)
        return info


@dataclass
class InitChoice:
    """What :func:`choose_init` decided: the weights (None: scratch) and the record.

    ``norms``: the chosen base's γ/β table, when it ships one (pass it to
    :func:`stylenet.train` as ``init_norms``).
    """

    state: dict[str, torch.Tensor] | None
    info: dict[str, Any]
    norms: list[dict[str, torch.Tensor]] | None = None


# --- bases --------------------------------------------------------------------------------


def base_starts(folder: Path = BASES_DIR) -> list[Start]:
    """Return the base generators listed in ``folder/manifest.json`` (none if absent)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring the base generators: cannot read their manifest: %s", exc)
        return []
    starts = []
    for entry in manifest.get("bases", []):
        path = folder / entry["file"]
        if not path.is_file():  # listed but not shipped (e.g. a GPU base not yet trained)
            continue
        config = GeneratorConfig(**entry["config"])
        norms = folder / entry["norms"] if entry.get("norms") else None
        starts.append(
            Start(
                "base",
                config,
                path.read_bytes,
                entry["sha256"],
                name=entry["file"],
                load_norms=norms.read_bytes if norms and norms.is_file() else None,
                norms_sha256=entry.get("norms_sha256"),
            )
        )
    return starts


def find_base(config: GeneratorConfig, folder: Path = BASES_DIR) -> Start | None:
    """Return the base generator of exactly this structure, or None."""
    return next((b for b in base_starts(folder) if b.config == config), None)


# --- style signatures -----------------------------------------------------------------------


def style_signature(loss: PerceptualLoss, style: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the Gram matrices of a 1×3×H×W painting at the loss's style layers (on CPU)."""
    loss.set_style(style.to(next(loss.vgg.parameters()).device))
    return {k: v.detach().float().cpu() for k, v in loss.style_targets.items()}


def signature_distance(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> float:
    """Return the style loss of one painting's Grams against the other's (its layer weights)."""
    total = 0.0
    for layer, weight in weights.items():
        total += weight * float(torch.mean((a[layer].float() - b[layer].float()) ** 2))
    return total


class SignatureCache:
    """Style signatures on disk (bf16 safetensors), so each painting is measured once.

    bf16, not fp16: a photo's deeper Grams exceed fp16's 65,504 and became ``inf``, whose
    distance to anything is ``inf`` (or NaN), so no nearest style was ever found for it.
    """

    #: In the cache key: signatures written as fp16 (format 1) are measured again.
    FORMAT = 2

    def __init__(self, folder: Path) -> None:
        """Keep signatures under ``folder`` (created on the first write)."""
        self.folder = Path(folder)

    def get_or_compute(
        self, image: bytes, settings: Mapping[str, Any], compute: Callable[[], dict]
    ) -> dict[str, torch.Tensor]:
        """Return the signature of ``image`` under ``settings``, computing it once."""
        digest = hashlib.sha256(image)
        keyed = {**settings, "signature_format": self.FORMAT}
        digest.update(json.dumps(keyed, sort_keys=True, default=str).encode())
        path = self.folder / f"{digest.hexdigest()[:32]}.safetensors"
        try:
            return {k: v.float() for k, v in load_file(path).items()}
        except (OSError, SafetensorError, ValueError):
            pass
        # Rounded as stored, so a painting compared with itself is at distance 0 whether
        # or not its signature came from the cache.
        signature = {k: v.bfloat16().contiguous() for k, v in compute().items()}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save(signature))
        except OSError as exc:
            log.warning("could not cache a style signature: %s", exc)
        return {k: v.float() for k, v in signature.items()}


def nearest_style(
    candidates: Sequence[Start],
    signature_of: Callable[[Start], dict[str, torch.Tensor] | None],
    target: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
) -> tuple[Start, float] | None:
    """Return the candidate whose painting is nearest to ``target``, with its distance."""
    best: tuple[Start, float] | None = None
    for candidate in candidates:
        signature = signature_of(candidate)
        if signature is None:
            continue
        distance = signature_distance(signature, target, weights)
        if not math.isfinite(distance):
            # A painting whose Grams overflow or are empty (too small for the deepest
            # layer) has no distance; a NaN taken first would win every comparison.
            log.warning("no style distance to %s: %s", candidate.style_id, distance)
            continue
        if best is None or distance < best[1]:
            best = (candidate, distance)
    return best


# --- the choice ----------------------------------------------------------------------------


def _state(start: Start) -> dict[str, torch.Tensor]:
    model, _ = load_generator(start.load(), expected_sha256=start.sha256)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _norms(start: Start, state: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Return the start's γ/β table, verified (digest, and names and shapes of ``state``)."""
    assert start.load_norms is not None
    data = start.load_norms()
    if hashlib.sha256(data).hexdigest() != start.norms_sha256:
        raise ModelFileError(f"the γ/β table of {start.name} does not match its sha256")
    try:
        rows = rows_from_table(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"the γ/β table of {start.name} is unreadable: {exc}") from None
    for row in rows:
        for name, value in row.items():
            if name not in state or state[name].shape != value.shape:
                raise ModelFileError(f"the γ/β table of {start.name} does not fit its base")
    return rows


def choose_init(
    init: str,
    config: GeneratorConfig,
    *,
    own: Start | None = None,
    named: Start | None = None,
    base: Start | None = None,
    nearest: Callable[[], tuple[Start, float] | None] | None = None,
) -> InitChoice:
    """Decide where a run starts (see the module docstring) and load those weights.

    Args:
        init: ``TrainParams.init``.
        config: the generator structure the run trains.
        own: the style's own current version (a retrain), if any.
        named: the style ``init`` names (None when it does not exist or has no version).
        base: the base generator for ``config``'s shape, if one is installed.
        nearest: finds the nearest compatible registered style (called only when needed).

    Returns:
        The state dict to start from (None: scratch) and the ``init`` record: ``kind``,
        ``requested``, what it came from, ``distance`` for a nearest style, and ``note``
        when a requested start could not be used.
    """
    notes: list[str] = []

    def usable(start: Start | None, what: str) -> bool:
        if start is None:
            return False
        if start.config != config:
            notes.append(f"{what} has another generator shape ({start.config}), not {config}")
            return False
        return True

    chosen: Start | None = None
    distance: float | None = None
    if init == "scratch":
        pass
    elif init == "base":
        if usable(base, "the base generator"):
            chosen = base
        elif base is None:
            notes.append(f"no base generator is installed for {config}")
    elif init == "auto":
        if usable(own, "the style's current version"):
            chosen = own
        elif usable(base, "the base generator"):
            chosen = base
        elif nearest is not None:
            try:
                found = nearest()
            except Exception as exc:  # a search problem costs the head start, not the run
                log.warning("init: the nearest-style search failed", exc_info=True)
                notes.append(f"the nearest-style search failed ({exc})")
                found = None
            if found is not None:
                chosen, distance = found
    elif usable(named, f"style {init!r}"):
        chosen = named
    elif named is None:
        notes.append(f"style {init!r} has no published version to start from")

    info: dict[str, Any] = {"requested": init}
    norms: list[dict[str, torch.Tensor]] | None = None
    if chosen is not None:
        try:
            state = _state(chosen)
        except ModelFileError as exc:
            notes.append(f"cannot load the {chosen.kind} weights: {exc}")
            chosen, state = None, None
    else:
        state = None
    if chosen is not None and state is not None and chosen.load_norms is not None:
        try:
            norms = _norms(chosen, state)
        except (ModelFileError, OSError) as exc:  # the base still serves, with its mean γ/β
            notes.append(f"cannot use the base's γ/β table: {exc}")
    info.update(chosen.describe() if chosen is not None else {"kind": "scratch"})
    if distance is not None and chosen is not None:
        info["distance"] = float(f"{distance:.6g}")
    if notes:
        info["note"] = "; ".join(notes) + ("; started from scratch" if chosen is None else "")
        log.info("init: %s", info["note"])
    return InitChoice(state, info, norms)


__all__ = [
    "BASES_DIR",
    "INIT_CHOICES",
    "InitChoice",
    "SignatureCache",
    "Start",
    "base_starts",
    "choose_init",
    "find_base",
    "nearest_style",
    "signature_distance",
    "style_signature",
]
