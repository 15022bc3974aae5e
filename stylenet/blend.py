"""Blending styles: a weighted mix of styles that share a lineage.

A blend spec names up to :data:`MAX_STYLES` styles with weights, ``a:0.7,b:0.3``
(:func:`parse_blend`). Weights are positive numbers, **normalized** to sum to 1 (so
``a:7,b:3`` is the same blend, and a weight left out counts 1: ``a,b`` is half and half),
then rounded to :data:`WEIGHT_DIGITS` decimals: the rounded weights are both what the
blend computes and what caches it, so one spec always means one generator.

Two generators blend when they share a lineage (:func:`common_ancestor`): both were
fine-tuned from the same weights, directly or through a chain of starts (a base, a style
started from another style, a retrain continuing its previous version). Each style's
lineage is the sha256 of its own weights followed by those of its starts, oldest last
(:func:`lineage`, from ``metrics.init``). Weights fine-tuned from one start stay close
enough that their average is a generator between them (the "model soup" observation);
two generators trained from different random starts share no coordinates, and their
average is noise: those are refused (:class:`StylesIncompatible`).

The blend is the weighted average of the parents' tensors (:func:`blend_state_dicts`).
Tensors equal in every parent (the convolutions of styles that adapted only the
instance-norm γ/β of one base) are kept as they are, so such a blend still shares every
convolution with its base, and its γ/β are the interpolation of the parents'.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InvalidParams, StylenetError
from .generators import GeneratorConfig, build_generator
from .model_file import generator_to_bytes, load_generator, read_info

#: Most styles in one blend.
MAX_STYLES = 4
#: Decimals the normalized weights are rounded to (what the blend computes and caches).
WEIGHT_DIGITS = 3
#: How many starts :func:`lineage` follows back (a chain is rarely longer than 2).
MAX_LINEAGE = 8
#: A style name in a spec: the style-id alphabet (``model_store.ids.STYLE_ID_RE``).
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_WEIGHT = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
#: The spec grammar, for documents (OpenAPI); :func:`parse_blend` says what is wrong.
SPEC_PATTERN = (
    rf"^{_NAME.pattern}(:{_WEIGHT.pattern})?(,{_NAME.pattern}(:{_WEIGHT.pattern})?)"
    rf"{{0,{MAX_STYLES - 1}}}$"
)


class BlendSpecError(InvalidParams):
    """A blend spec that cannot be read; the message says what is wrong and where."""

    def __init__(self, message: str) -> None:
        super().__init__("style", message)
        self.reason = message


class StylesIncompatible(StylenetError, ValueError):
    """Styles that cannot be blended: another structure, or no shared lineage.

    Attributes:
        styles: the styles of the blend, as named.
        reason: ``structure`` (another generator shape) or ``lineage`` (no shared start).
    """

    def __init__(self, message: str, styles: Sequence[str], reason: str) -> None:
        super().__init__(message)
        self.styles = list(styles)
        self.reason = reason


@dataclass(frozen=True)
class BlendPart:
    """One style of a blend and its normalized weight (in (0, 1])."""

    style: str
    weight: float


def parse_blend(spec: str, *, max_styles: int = MAX_STYLES) -> tuple[BlendPart, ...]:
    """Read ``spec`` (``a:0.7,b:0.3``; a bare id is one style of weight 1).

    Returns:
        The parts in the order given, weights normalized to sum to 1 and rounded to
        :data:`WEIGHT_DIGITS` decimals (the last part takes the rounding's remainder).

    Raises:
        BlendSpecError: empty, a name that is not a style id, a weight that is not a
            positive finite number, a style named twice, more than ``max_styles``
            styles, or a weight that rounds to nothing.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise BlendSpecError("empty: give a style id, or a blend like 'a:0.7,b:0.3'")
    items = [item.strip() for item in spec.split(",")]
    if len(items) > max_styles:
        raise BlendSpecError(f"{len(items)} styles; a blend takes at most {max_styles}")
    names: list[str] = []
    weights: list[float] = []
    for position, item in enumerate(items, 1):
        name, sep, weight_text = item.partition(":")
        name = name.strip()
        if not name:
            raise BlendSpecError(f"part {position} ({item!r}) names no style")
        if not _NAME.fullmatch(name):
            raise BlendSpecError(
                f"{name[:70]!r} is not a style id (lowercase letters, digits, - and _; "
                "weights follow a colon: 'a:0.7,b:0.3')"
            )
        if name in names:
            raise BlendSpecError(f"style {name!r} is named twice")
        weight = 1.0
        if sep:
            text = weight_text.strip()
            if not _WEIGHT.fullmatch(text):
                raise BlendSpecError(f"weight of {name!r} ({text[:30]!r}) is not a number")
            weight = float(text)
            if not math.isfinite(weight) or weight <= 0:
                raise BlendSpecError(f"weight of {name!r} must be > 0, got {text}")
        names.append(name)
        weights.append(weight)
    total = sum(weights)
    if not math.isfinite(total):
        raise BlendSpecError("weights too large")
    rounded = [round(w / total, WEIGHT_DIGITS) for w in weights[:-1]]
    rounded.append(round(1.0 - sum(rounded), WEIGHT_DIGITS))
    for name, weight in zip(names, rounded, strict=True):
        if weight <= 0:
            raise BlendSpecError(
                f"weight of {name!r} is under 1/{10**WEIGHT_DIGITS} of the blend's; leave it out"
            )
    return tuple(BlendPart(n, w) for n, w in zip(names, rounded, strict=True))


def format_blend(parts: Sequence[BlendPart]) -> str:
    """Return the canonical spec of ``parts`` (``a:0.7,b:0.3``; one style: its id)."""
    if len(parts) == 1:
        return parts[0].style
    return ",".join(f"{p.style}:{p.weight:g}" for p in parts)


# --- lineage ------------------------------------------------------------------------------

#: ``lookup(style_id, version)`` -> that version's ``(sha256, init record)``, or None.
Lookup = Callable[[str, int], "tuple[str, Mapping[str, Any] | None] | None"]


def lineage(
    sha256: str, init: Mapping[str, Any] | None, lookup: Lookup | None = None
) -> tuple[str, ...]:
    """Return the sha256s of a generator and of its starts, newest first.

    ``init`` is the generator's ``metrics.init`` (:mod:`stylenet.warmstart`): its
    ``sha256`` is the start's weights. A start that was itself a style (``kind`` ``style``
    or ``continue``, with ``style_id`` and ``version``) is followed through ``lookup``, up
    to :data:`MAX_LINEAGE` starts; scratch ends the chain.
    """
    chain = [sha256]
    seen = {sha256}
    current = init
    while current and len(chain) <= MAX_LINEAGE:
        start = current.get("sha256")
        if not isinstance(start, str) or not start or start in seen:
            break
        chain.append(start)
        seen.add(start)
        style_id, version = current.get("style_id"), current.get("version")
        if lookup is None or not isinstance(style_id, str) or not isinstance(version, int):
            break
        found = lookup(style_id, version)
        if found is None or found[0] != start:
            break
        current = found[1]
    return tuple(chain)


@dataclass(frozen=True)
class Parent:
    """A style as a blend sees it: its name, structure and lineage (newest first)."""

    style: str
    config: GeneratorConfig
    lineage: tuple[str, ...]
    #: A few words on where it started (for the refusal's message), e.g. "scratch".
    start: str = ""


def common_ancestor(parents: Sequence[Parent]) -> str:
    """Return the sha256 of the nearest start all ``parents`` share (one may be another).

    Raises:
        StylesIncompatible: another generator structure, or no shared start.
    """
    names = [p.style for p in parents]
    first = parents[0]
    for other in parents[1:]:
        if other.config != first.config:
            raise StylesIncompatible(
                f"styles {first.style!r} and {other.style!r} cannot be blended: their "
                f"generators differ in structure ({first.config} vs {other.config})",
                names,
                "structure",
            )
    shared = set(first.lineage).intersection(*(p.lineage for p in parents[1:]))
    if not shared:
        starts = "; ".join(f"{p.style}: {p.start or 'unknown start'}" for p in parents)
        raise StylesIncompatible(
            f"styles {', '.join(repr(n) for n in names)} share no base: blending needs "
            f"styles fine-tuned from the same base generator (where each started: {starts})",
            names,
            "lineage",
        )
    return next(sha for sha in first.lineage if sha in shared)


def describe_start(init: Mapping[str, Any] | None) -> str:
    """Say in a few words where a generator started (for messages)."""
    if not init:
        return "no start recorded (trained from scratch)"
    kind = str(init.get("kind", "unknown"))
    sha = str(init.get("sha256", ""))[:12]
    if kind == "scratch":
        return "trained from scratch"
    if kind in ("style", "continue") and init.get("style_id"):
        return f"started from style {init['style_id']} v{init.get('version')} ({sha})"
    return f"started from a {kind} ({sha})" if sha else f"started from a {kind}"


# --- the weights ----------------------------------------------------------------------------


def blend_state_dicts(
    states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """Return ``Σ wᵢ · stateᵢ`` tensor by tensor (float32).

    A tensor equal in every state is kept as it is (no rounding from summing it), so the
    convolutions that styles share stay bit-identical and the blend shares them too.

    Raises:
        InvalidParams: the states have other tensor names or shapes, or the weights are
            not one per state.
    """
    if len(states) != len(weights) or not states:
        raise InvalidParams("weights", "one weight per generator")
    keys = list(states[0])
    for state in states[1:]:
        if list(state) != keys:
            raise InvalidParams("weights", "the generators hold other tensors")
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        tensors = [s[key] for s in states]
        first = tensors[0]
        if any(t.shape != first.shape for t in tensors[1:]):
            raise InvalidParams("weights", f"tensor {key} differs in shape")
        if not first.is_floating_point() or all(torch.equal(first, t) for t in tensors[1:]):
            out[key] = first.detach().clone()
            continue
        total = torch.zeros_like(first, dtype=torch.float32)
        for tensor, weight in zip(tensors, weights, strict=True):
            total += float(weight) * tensor.detach().float()
        out[key] = total
    return out


def blend_generator_bytes(
    files: Sequence[tuple[str, bytes]],
    weights: Sequence[float],
    *,
    lookup: Lookup | None = None,
) -> bytes:
    """Blend generator files into one (float32 generator-file bytes).

    Args:
        files: ``(style name, generator file bytes)`` of each parent.
        weights: one per file (normalized, as :func:`parse_blend` gives them).
        lookup: follows style→style starts (see :func:`lineage`); None: each file's own
            recorded start only.

    Returns:
        A generator file whose metrics record the blend (``blend``: its parts and their
        shared start) and, as ``init``, that shared start.

    Raises:
        StylesIncompatible: another structure or no shared start (nothing is loaded).
        ModelFileError: a file cannot be served.
    """
    infos = [read_info(data) for _, data in files]
    parents = [
        Parent(
            name,
            info.config,
            lineage(info.sha256, info.metrics.get("init"), lookup),
            describe_start(info.metrics.get("init")),
        )
        for (name, _), info in zip(files, infos, strict=True)
    ]
    ancestor = common_ancestor(parents)
    states = [load_generator(data)[0].state_dict() for _, data in files]
    model = build_generator(infos[0].config)
    model.load_state_dict(blend_state_dicts(states, weights))
    parts = [
        {"style": name, "weight": weight, "sha256": info.sha256}
        for (name, _), weight, info in zip(files, weights, infos, strict=True)
    ]
    metrics = {
        "blend": {"parts": parts, "ancestor": ancestor},
        "init": {"kind": "blend", "sha256": ancestor},
    }
    return generator_to_bytes(
        model, train_params=infos[0].train_params, lossnet=infos[0].lossnet, metrics=metrics
    )


__all__ = [
    "MAX_STYLES",
    "SPEC_PATTERN",
    "WEIGHT_DIGITS",
    "BlendPart",
    "BlendSpecError",
    "Parent",
    "StylesIncompatible",
    "blend_generator_bytes",
    "blend_state_dicts",
    "common_ancestor",
    "describe_start",
    "format_blend",
    "lineage",
    "parse_blend",
]
