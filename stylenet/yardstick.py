"""The yardstick: a generator's quality relative to image optimization on the same loss.

Raw loss values depend on the style, the loss weights and the photo, so they do not say
whether a generator is good. The yardstick compares a feed-forward generator G with
what Gatys-style optimization (Adam on the pixels, starting from the content photo x)
reaches on the *same* :class:`~stylenet.losses.PerceptualLoss`:

* G's content loss c_G and style loss s_G on a held-out photo x;
* the optimization trajectory: (content, style) after every step. It starts at x, so
  its content loss starts at 0 and rises while its style loss falls;
* **r = s_opt(c_G) / s_G**, where s_opt(c) is the lowest style loss the optimization
  reached at a content loss no higher than c. r = 1: G is as good as optimization at the
  same content fidelity; r < 1: worse (r = 0.5: G's style loss is twice optimization's);
  r > 1: better than optimization got within its steps. More steps only extend the
  trajectory, so r can only fall as they grow: compare r at the same steps, lr and size.

Definition choices (:func:`optimization_relative_score`):

* s_opt is read off the trajectory's lower envelope (its Pareto front: the points no
  other point beats in both losses), so r is well defined when the trajectory is not
  monotonic, and it does not depend on the order of the steps;
* between the two front points whose content losses bracket c_G, s_opt is interpolated
  linearly in content and **geometrically (linearly in log)** in style: the style loss
  falls roughly exponentially along the trajectory, and r is a ratio;
* c_G beyond the whole trajectory (the optimization never became that loose): s_opt is
  the last front point's style, ``extrapolated`` is true and r is an **upper bound**
  (more steps could only lower s_opt). c_G below the first point (only possible when
  the trajectory does not start at x): the first point's style, ``extrapolated`` true,
  r a **lower bound**;
* the optimization's style weight is ramped geometrically from ×1 to ×16
  (``style_ramp``) over its run, and each point is measured under the loss's own
  weights: at ×1 alone the optimization settles at a lower content loss than strongly
  stylized generators have, and r would only be a bound for them (``style_ramp=1``
  gives plain optimization);
* ``equivalent_steps``: the first step at which the optimization's style loss is ≤ s_G
  (regardless of its content loss), ``None`` if it never gets there within the run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .devices import autocast, synchronize
from .losses import PerceptualLoss

log = logging.getLogger(__name__)
DEFAULT_STYLE_RAMP = 16.0
"""How far the optimization's style weight grows over its run (geometrically, from ×1)."""
DEFAULT_LR = 4.0  # Adam on 0–255 pixels; the value bench/quality.py's baseline used


def _num(value: float | None, digits: int = 6) -> float | None:
    """Round to ``digits`` significant digits; None for missing or non-finite values."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def pareto_front(trajectory: Sequence[tuple[float, float]]) -> list[tuple[int, float, float]]:
    """Return the trajectory's lower envelope as (step, content, style), content ascending.

    A point is kept when no point with a content loss ≤ its own has a lower style loss.
    Non-finite points are ignored.
    """
    points = [
        (step, c, s)
        for step, (c, s) in enumerate(trajectory)
        if math.isfinite(c) and math.isfinite(s)
    ]
    points.sort(key=lambda p: (p[1], p[2], p[0]))
    front: list[tuple[int, float, float]] = []
    for point in points:
        if not front or point[2] < front[-1][2]:
            front.append(point)
    return front


def optimization_relative_score(
    trajectory: Sequence[tuple[float, float]], content_loss: float, style_loss: float
) -> dict[str, Any]:
    """Score a generator's (content, style) loss against an optimization trajectory.

    Args:
        trajectory: (content loss, style loss) of the optimized image after each step;
            index i is the image after i steps (index 0: the content photo itself).
        content_loss: the generator's content loss c_G on the same photo.
        style_loss: the generator's style loss s_G on the same photo.

    Returns:
        A JSON-able dict: ``r`` (None when s_G is not a positive finite number),
        ``style_at_content`` (s_opt(c_G)), ``bracket`` (the two steps interpolated
        between, or one step), ``extrapolated``, ``bound`` (None, ``"upper"`` or
        ``"lower"``: what r is when extrapolated) and ``equivalent_steps``. See the
        module docstring for the definitions.

    Raises:
        ValueError: the trajectory has no finite point, or c_G is not finite.
    """
    front = pareto_front(trajectory)
    if not front:
        raise ValueError("the trajectory has no finite point")
    if not math.isfinite(content_loss):
        raise ValueError(f"content loss must be finite, got {content_loss}")
    extrapolated, bound = False, None
    if content_loss < front[0][1]:
        s_opt, bracket, extrapolated, bound = front[0][2], [front[0][0]], True, "lower"
    elif content_loss >= front[-1][1]:
        s_opt, bracket = front[-1][2], [front[-1][0]]
        if content_loss > front[-1][1]:
            extrapolated, bound = True, "upper"
    else:
        # front[k-1].content <= c_G < front[k].content
        k = next(i for i, p in enumerate(front) if p[1] > content_loss)
        (step0, c0, s0), (step1, c1, s1) = front[k - 1], front[k]
        t = (content_loss - c0) / (c1 - c0)
        if s0 > 0 and s1 > 0:
            s_opt = math.exp((1 - t) * math.log(s0) + t * math.log(s1))
        else:  # a zero style loss has no logarithm: fall back to linear
            s_opt = (1 - t) * s0 + t * s1
        bracket = [step0, step1]
    valid = math.isfinite(style_loss) and style_loss > 0
    equivalent = next(
        (i for i, (_, s) in enumerate(trajectory) if math.isfinite(style_loss) and s <= style_loss),
        None,
    )
    return {
        "r": _num(s_opt / style_loss) if valid else None,
        "style_at_content": _num(s_opt),
        "bracket": bracket,
        "extrapolated": extrapolated,
        "bound": bound,
        "equivalent_steps": equivalent,
    }


@dataclass
class OptimizationRun:
    """One Gatys-style optimization: the final image, its trajectory and its cost."""

    image: torch.Tensor = field(repr=False)
    trajectory: list[tuple[float, float]]
    final: dict[str, float]
    seconds: float


@contextlib.contextmanager
def _fixed_content(loss: PerceptualLoss, targets: dict[str, torch.Tensor]) -> Iterator[None]:
    """Serve the content image's features from a cache while optimizing against it.

    :meth:`PerceptualLoss.forward` recomputes the content targets on every call; with a
    fixed content image that is one VGG forward of four per step wasted.
    """
    loss.content_features = lambda _content: targets  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loss.content_features


def optimization_trajectory(
    loss: PerceptualLoss,
    content: torch.Tensor,
    steps: int,
    *,
    lr: float = DEFAULT_LR,
    device: torch.device | str | None = None,
    style_ramp: float = DEFAULT_STYLE_RAMP,
) -> OptimizationRun:
    """Gatys et al.: optimize the image itself with Adam, from ``content``, on ``loss``.

    The loss sees the image clamped to 0–255 (the picture one would save). On CUDA the
    loss runs under the trainer's bf16 autocast; the pixels stay float32.

    With ``style_ramp`` > 1 the objective's style term is multiplied by a factor that
    grows geometrically from 1 to ``style_ramp`` over the run, while the trajectory
    records the terms under ``loss``'s own weights. Why: at its own weights the
    optimization settles at a content loss that strongly stylized generators exceed
    (measured on CPU at 128 px: all held-out photos of The Starry Night and The Scream
    baselines), so r would only be a bound. The ramp walks the optimization along the
    trade-off curve past that point, so the curve brackets such generators too.

    Args:
        loss: the perceptual loss, its style already set.
        content: the 1×3×H×W content photo (0–255), also the starting point.
        steps: Adam steps (0: only the starting point is measured).
        lr: Adam learning rate, in pixel units.
        device: where to run (default: the loss network's device).
        style_ramp: the style weight's final multiplier (1: plain optimization).

    Returns:
        The final image (on CPU), the (content, style) trajectory of ``steps + 1``
        points (point i: after i steps), the final loss terms and the seconds taken.
    """
    device = torch.device(device) if device else next(loss.vgg.parameters()).device
    content = content.to(device, torch.float32)
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=lr)
    trajectory: list[tuple[float, float]] = []
    started = time.perf_counter()
    with autocast(device):
        targets = loss.content_features(content)
    with _fixed_content(loss, targets):
        for step in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                terms = loss(image.clamp(0, 255), content)
            factor = style_ramp ** (step / max(1, steps - 1))
            (terms.content + factor * terms.style + terms.tv).backward()
            # The terms are those of the image before this step's update.
            trajectory.append((float(terms.content.detach()), float(terms.style.detach())))
            optimizer.step()
        with torch.no_grad(), autocast(device):
            final = loss(image.clamp(0, 255), content).as_floats()
    synchronize(device)
    trajectory.append((final["content"], final["style"]))
    seconds = time.perf_counter() - started
    return OptimizationRun(image.detach().clamp(0, 255).cpu(), trajectory, final, seconds)


@torch.no_grad()
def generator_losses(
    generator: nn.Module, loss: PerceptualLoss, image: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """Loss terms of ``generator``'s output for one 1×3×H×W photo (as the trainer measures)."""
    image = image.to(device, torch.float32)
    with autocast(device):
        return loss(generator(image), image).as_floats()


def yardstick(
    generator: nn.Module,
    loss: PerceptualLoss,
    images: Sequence[torch.Tensor],
    steps: int,
    *,
    lr: float = DEFAULT_LR,
    device: torch.device | str | None = None,
    names: Sequence[str] | None = None,
    style_size: int | None = None,
    keep_trajectories: bool = False,
    runs: Sequence[OptimizationRun] | None = None,
    style_ramp: float = DEFAULT_STYLE_RAMP,
) -> dict[str, Any]:
    """Score ``generator`` against optimization on held-out ``images`` (see the module doc).

    Args:
        generator: the trained generator (put in eval mode for the measurement).
        loss: the loss it was trained on, its style already set (at the style size the
            generator was trained with).
        images: held-out 1×3×H×W content photos (0–255) it never trained on.
        steps: optimization steps per photo.
        lr: the optimization's Adam learning rate.
        device: where to run (default: the loss network's device).
        names: a name per image for the report (default: their indices).
        style_size: recorded in the report (the loss cannot tell it).
        keep_trajectories: also return each photo's whole trajectory (for plots).
        runs: the optimization runs of ``images`` from :func:`optimization_trajectory`
            (same loss and steps), to score several generators against the same
            trajectories: the optimization does not depend on the generator.
        style_ramp: see :func:`optimization_trajectory`.

    Returns:
        A JSON-able dict: ``r_mean`` (mean of the per-photo r that exist; None if none),
        ``extrapolated`` (any photo's r is a bound), ``steps``, ``lr``, ``image_size``
        (largest side), ``style_size``, ``seconds`` and ``images``: per photo its
        ``content``/``style`` losses under G, the score fields of
        :func:`optimization_relative_score` and the optimization's final losses.
    """
    device = torch.device(device) if device else next(loss.vgg.parameters()).device
    labels = list(names) if names is not None else [str(i) for i in range(len(images))]
    if len(labels) != len(images) or (runs is not None and len(runs) != len(images)):
        raise ValueError(f"{len(images)} images need as many names and runs")
    was_training = generator.training
    generator.eval()
    started = time.perf_counter()
    per_image: list[dict[str, Any]] = []
    try:
        for index, (name, image) in enumerate(zip(labels, images, strict=True)):
            terms = generator_losses(generator, loss, image, device)
            run = (
                runs[index]
                if runs is not None
                else optimization_trajectory(
                    loss, image, steps, lr=lr, device=device, style_ramp=style_ramp
                )
            )
            entry: dict[str, Any] = {
                "name": name,
                "size": list(image.shape[-2:]),
                "content": _num(terms["content"]),
                "style": _num(terms["style"]),
                **optimization_relative_score(run.trajectory, terms["content"], terms["style"]),
                "optimization_final": {k: _num(run.final[k]) for k in ("content", "style")},
                "seconds": round(run.seconds, 2),
            }
            if keep_trajectories:
                entry["trajectory"] = [[_num(c), _num(s)] for c, s in run.trajectory]
            per_image.append(entry)
            log.info("yardstick: %s r = %s (%.1f s)", name, entry["r"], run.seconds)
    finally:
        generator.train(was_training)
    scores = [e["r"] for e in per_image if e["r"] is not None]
    return {
        "r_mean": _num(sum(scores) / len(scores), 4) if scores else None,
        "extrapolated": any(e["extrapolated"] for e in per_image),
        "steps": steps,
        "lr": lr,
        "style_ramp": style_ramp,
        "image_size": max((max(e["size"]) for e in per_image), default=None),
        "style_size": style_size,
        "seconds": round(time.perf_counter() - started, 2),
        "images": per_image,
    }


__all__ = [
    "OptimizationRun",
    "generator_losses",
    "optimization_relative_score",
    "optimization_trajectory",
    "pareto_front",
    "yardstick",
]
