"""VGG16/VGG19 feature extractors with named taps, used as the frozen loss network.

Layers are named as in the style-transfer literature: ``conv{block}_{k}``,
``relu{block}_{k}``, ``pool{block}``. Only the layers up to the deepest requested tap
are built, so a content loss at ``relu2_2`` does not pay for ``conv5_1``.

The network receives images in the pixel convention of :mod:`stylenet.pixels`
(RGB, 0–255) and applies the preprocessing its weights were trained with itself:

* ``caffe`` — the original Oxford VGG (Caffe, and its Keras release): BGR order,
  0–255, minus the ImageNet mean pixel (B, G, R) = (103.939, 116.779, 123.68);
* ``torchvision`` — torchvision's retrained weights: RGB in 0–1, minus mean
  (0.485, 0.456, 0.406), divided by std (0.229, 0.224, 0.225).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .errors import LossNetworkError

BLOCK_CONVS: dict[int, tuple[int, ...]] = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)
PREPROCESSING = ("caffe", "torchvision")
# Deepest layer any preset uses (relu5_1): converted weight files stop there.
LAST_STORED_CONV = "conv5_1"


def layer_names(depth: int) -> list[str]:
    """Return the ordered layer names of VGG-``depth`` (conv, relu and pool layers)."""
    if depth not in BLOCK_CONVS:
        raise LossNetworkError(f"VGG depth must be 16 or 19, got {depth}")
    names: list[str] = []
    for block, convs in enumerate(BLOCK_CONVS[depth], start=1):
        for k in range(1, convs + 1):
            names += [f"conv{block}_{k}", f"relu{block}_{k}"]
        names.append(f"pool{block}")
    return names


def conv_names(depth: int, last: str = LAST_STORED_CONV) -> list[str]:
    """Return the conv layer names of VGG-``depth`` up to and including ``last``."""
    convs = [n for n in layer_names(depth) if n.startswith("conv")]
    return convs[: convs.index(last) + 1]


class Preprocess(nn.Module):
    """Convert pixel-convention images to the input a VGG's weights expect."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in PREPROCESSING:
            raise LossNetworkError(f"preprocessing must be one of {PREPROCESSING}, got {kind!r}")
        self.kind = kind
        if kind == "caffe":
            mean, scale = torch.tensor([103.939, 116.779, 123.68]), torch.ones(3)
        else:
            mean = torch.tensor([0.485, 0.456, 0.406]) * 255.0
            scale = 1.0 / (torch.tensor([0.229, 0.224, 0.225]) * 255.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.kind == "caffe":
            x = x.flip(1)  # RGB -> BGR
        return (x - self.mean) * self.scale


class VGGFeatures(nn.Module):
    """A frozen VGG returning the activations of named layers.

    Args:
        depth: 16 or 19.
        taps: names of the layers whose outputs ``forward`` returns.
        weights: a state dict with keys ``conv{b}_{k}.weight`` / ``.bias``.
        preprocessing: ``"caffe"`` or ``"torchvision"`` (see module docstring).
    """

    def __init__(
        self,
        depth: int,
        taps: Iterable[str],
        weights: Mapping[str, torch.Tensor],
        preprocessing: str,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.taps = tuple(dict.fromkeys(taps))
        names = layer_names(depth)
        unknown = [t for t in self.taps if t not in names]
        if unknown or not self.taps:
            raise LossNetworkError(f"unknown VGG{depth} layers {unknown}; valid: {names}")
        last = max(names.index(t) for t in self.taps)
        self.preprocess = Preprocess(preprocessing)
        self.layers = nn.ModuleDict()
        in_channels = 3
        for name in names[: last + 1]:
            if name.startswith("conv"):
                out_channels = BLOCK_CHANNELS[int(name[4]) - 1]
                self.layers[name] = nn.Conv2d(in_channels, out_channels, 3, padding=1)
                in_channels = out_channels
            elif name.startswith("relu"):
                self.layers[name] = nn.ReLU()
            else:
                self.layers[name] = nn.MaxPool2d(2, 2)
        wanted = {
            f"{n}.{p}" for n in self.layers if n.startswith("conv") for p in ("weight", "bias")
        }
        missing = sorted(wanted - set(weights))
        if missing:
            raise LossNetworkError(f"loss-network weights lack {missing[:4]}")
        state = {k: weights[k] for k in wanted}
        try:
            self.layers.load_state_dict(state, strict=True)
        except RuntimeError as exc:  # shape mismatch: a file of another network
            raise LossNetworkError(f"loss-network weights do not fit VGG{depth}: {exc}") from exc
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Keep the loss network in eval mode whatever the caller asks."""
        return super().train(False)

    def forward(
        self, x: torch.Tensor, taps: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Return ``{tap: activation}`` for pixel-convention images ``x``.

        Args:
            x: N×3×H×W images, RGB 0–255.
            taps: a subset of :attr:`taps` to return (default: all); the network stops
                at the deepest of them, so e.g. content targets at ``relu2_2`` do not
                pay for the style layers below it.
        """
        wanted = self.taps if taps is None else tuple(dict.fromkeys(taps))
        unknown = [t for t in wanted if t not in self.taps]
        if unknown:
            raise LossNetworkError(f"layers {unknown} are not tapped (taps: {self.taps})")
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(x)
        for name, layer in self.layers.items():
            x = layer(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out
