"""Perceptual losses (Gatys et al.; Johnson et al.; Ulyanov et al.) over a frozen VGG.

* content loss: mean squared error between VGG features of the output and the content
  image at the content layers;
* style loss: mean squared error between Gram matrices (normalized by C·H·W) of the
  output and of the style image at the style layers, weighted per layer;
* total variation: mean squared difference of neighbouring pixels (a mild smoothness prior).

Raw terms on 0–255 Caffe-preprocessed VGG features are in the 1e5–1e7 range; the
presets' default weights (content 1e-5, style 1.5e-4) bring them to single digits. The
style/content ratio was chosen by eye on The Scream (2,000 iterations at 256 px on an
H100): 5e-5 left the content dominant, 4e-4 started to erase it.

Targets of the style image are computed once per style (:meth:`PerceptualLoss.set_style`);
content targets once per batch, without gradient, through the loss network only as deep
as the content layers (:meth:`PerceptualLoss.content_features`).
Grams are accumulated in float32 even under bf16 autocast: they sum H·W products.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidParams
from .vgg import VGGFeatures


@dataclass(frozen=True)
class LossPreset:
    """A loss-network recipe: which VGG, which layers, and the default weights."""

    name: str
    source: str
    content_layers: Mapping[str, float]
    style_layers: Mapping[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    reference: str = field(default="", compare=False)


PRESETS: dict[str, LossPreset] = {
    p.name: p
    for p in (
        # texture_nets (Ulyanov et al.): VGG19, content relu4_2, style relu1_1..relu4_1.
        LossPreset(
            "ulyanov",
            "keras-vgg19",
            {"relu4_2": 1.0},
            {"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 1.0, "relu4_1": 1.0},
            content_weight=1e-5,
            style_weight=1.5e-4,
            tv_weight=1e-6,
            reference="DmitryUlyanov/texture_nets",
        ),
        # fast-neural-style (Johnson et al.): VGG16, content relu2_2, style relu{1_2,2_2,3_3,4_3}.
        # Johnson used the Caffe VGG16; keras-vgg16 is those weights, available offline.
        LossPreset(
            "johnson",
            "keras-vgg16",
            {"relu2_2": 1.0},
            {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0},
            content_weight=1e-5,
            style_weight=1.5e-4,
            tv_weight=1e-6,
            reference="jcjohnson/fast-neural-style",
        ),
    )
}


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Return the N×C×C Gram matrices of N×C×H×W features, divided by C·H·W, in float32."""
    n, c, h, w = features.shape
    # Autocast would run bmm in bf16 whatever its inputs are; a Gram sums H·W products,
    # so it is computed with autocast off.
    kind = features.device.type
    # (The meta device, used to count FLOPs, has no autocast.)
    off = torch.autocast(kind, enabled=False) if kind != "meta" else contextlib.nullcontext()
    with off:
        flat = features.float().reshape(n, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between horizontally and vertically adjacent pixels."""
    dh = (images[..., 1:, :] - images[..., :-1, :]).float().pow(2).mean()
    dw = (images[..., :, 1:] - images[..., :, :-1]).float().pow(2).mean()
    return dh + dw


@dataclass
class LossTerms:
    """The weighted loss terms of one evaluation (tensors, so ``total`` can backprop)."""

    total: torch.Tensor
    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Return the terms as Python floats (for logs and progress)."""
        return {k: float(v.detach()) for k, v in vars(self).items()}


class PerceptualLoss(nn.Module):
    """Content + style + total-variation loss measured by a frozen VGG.

    Args:
        vgg: the loss network; must tap every content and style layer.
        content_layers: layer → weight of the content term.
        style_layers: layer → weight of the style term.
        content_weight: multiplier of the whole content term.
        style_weight: multiplier of the whole style term.
        tv_weight: multiplier of the total-variation term.
    """

    def __init__(
        self,
        vgg: VGGFeatures,
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        content_weight: float,
        style_weight: float,
        tv_weight: float,
    ) -> None:
        super().__init__()
        missing = [t for t in (*content_layers, *style_layers) if t not in vgg.taps]
        if missing:
            raise InvalidParams("layers", f"loss network does not tap {missing}")
        self.vgg = vgg
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.style_targets: dict[str, torch.Tensor] = {}

    @classmethod
    def from_settings(cls, vgg: VGGFeatures, settings: Mapping[str, Any]) -> PerceptualLoss:
        """Build the loss of ``TrainParams.resolved()`` settings over ``vgg``."""
        return cls(
            vgg,
            settings["content_layers"],
            settings["style_layers"],
            settings["content_weight"],
            settings["style_weight"],
            settings["tv_weight"],
        )

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        """Compute the Gram targets of a 1×3×H×W style image (pixel convention)."""
        features = self.vgg(style)
        self.style_targets = {k: gram_matrix(features[k]).detach() for k in self.style_layers}

    def content_features(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the content-layer features of ``content`` (no gradient).

        The loss network stops at the deepest content layer: with the ``johnson``
        preset (content ``relu2_2``, style down to ``relu4_3``) that is a third of
        the full pass.
        """
        with torch.no_grad():
            features = self.vgg(content, taps=self.content_layers)
        return {k: features[k].detach() for k in self.content_layers}

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> LossTerms:
        """Return the loss of generator ``output`` for the ``content`` batch it came from."""
        if not self.style_targets:
            raise RuntimeError("call set_style() before computing losses")
        targets = self.content_features(content)
        features = self.vgg(output)
        content_loss = sum(
            w * F.mse_loss(features[k].float(), targets[k].float())
            for k, w in self.content_layers.items()
        )
        style_loss = sum(
            w
            * F.mse_loss(
                gram_matrix(features[k]), self.style_targets[k].expand(len(output), -1, -1)
            )
            for k, w in self.style_layers.items()
        )
        tv_loss = total_variation(output)
        content_t = self.content_weight * torch.as_tensor(content_loss)
        style_t = self.style_weight * torch.as_tensor(style_loss)
        tv_t = self.tv_weight * tv_loss
        return LossTerms(content_t + style_t + tv_t, content_t, style_t, tv_t)
