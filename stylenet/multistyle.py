"""One network, many styles: a forward pass with per-sample instance-norm γ/β.

Styles adapted from one base with only their instance-norm γ/β trained
(``TrainParams.norm_first_steps >= iterations``, :mod:`stylenet.conditional`) share every
convolution: they differ in a few kilobytes. :class:`MultiStyle` runs the shared
convolutions once for a batch whose samples ask for different styles: each instance
norm normalizes without affine parameters, then scales and shifts each sample by its own
style's γ/β (conditional instance norm, Dumoulin et al. 2017). A sample's result equals
its style's generator run alone, up to float rounding (the batched convolutions sum in
another order).

:func:`trunk_digest` says which generators can share a forward: equal digests, equal
convolutions. :func:`style_norms` takes what one style adds: its γ/β.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: A style's γ/β by instance-norm parameter name (``…weight``, ``…bias``): float32 vectors.
Norms = Mapping[str, torch.Tensor]


def norm_parameter_names(generator: nn.Module) -> list[str]:
    """Return the names of the instance norms' γ and β in ``generator``.

    What a style varies over a shared base (here, serving) and what joint training
    (:mod:`stylenet.conditional`) gives each painting.

    Raises:
        ValueError: the generator has no affine instance norm.
    """
    names = [
        f"{name}.{kind}"
        for name, module in generator.named_modules()
        if isinstance(module, nn.InstanceNorm2d) and module.affine
        for kind in ("weight", "bias")
    ]
    if not names:
        raise ValueError("the generator has no affine instance norm")
    return names


def has_affine_instance_norm(generator: nn.Module) -> bool:
    """Whether ``generator`` has affine instance norms (what :class:`MultiStyle` varies)."""
    return any(isinstance(m, nn.InstanceNorm2d) and m.affine for m in generator.modules())


def style_norms(generator: nn.Module) -> dict[str, torch.Tensor]:
    """Return the γ/β of ``generator``'s instance norms (detached float32 copies).

    Raises:
        ValueError: the generator has no affine instance norm.
    """
    params = dict(generator.named_parameters())
    return {n: params[n].detach().float().clone() for n in norm_parameter_names(generator)}


def trunk_digest(generator: nn.Module) -> str | None:
    """Return a sha256 of everything but the instance norms' γ/β (None: no such norms).

    Two generators with the same digest hold the same convolutions (to the bit, in
    float32), so one :class:`MultiStyle` serves both.
    """
    if not has_affine_instance_norm(generator):
        return None
    skip = set(norm_parameter_names(generator))
    digest = hashlib.sha256(repr(generator.config).encode())  # type: ignore[attr-defined]
    for name, tensor in sorted(generator.state_dict().items()):
        if name in skip:
            continue
        value = tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else None)
        digest.update(f"{name}:{tuple(value.shape)}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


class _SampleNorm(nn.Module):
    """Instance norm without affine, then each sample's own γ/β (set per forward)."""

    def __init__(self, name: str, norm: nn.InstanceNorm2d) -> None:
        super().__init__()
        self.name = name
        self.eps = norm.eps
        self.gamma: torch.Tensor | None = None  # N×C, set by MultiStyle.forward
        self.beta: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma is None or self.beta is None:
            raise RuntimeError("MultiStyle: call it with the samples' norms")
        y = F.instance_norm(x, eps=self.eps)
        gamma = self.gamma.to(y.dtype)[:, :, None, None]
        beta = self.beta.to(y.dtype)[:, :, None, None]
        return torch.addcmul(beta, y, gamma)


class MultiStyle(nn.Module):
    """A generator's convolutions with per-sample instance-norm γ/β.

    Built from any generator of the family (its own γ/β are dropped); call it with a
    batch and one :data:`Norms` per sample (from :func:`style_norms` of generators with
    the same :func:`trunk_digest`).
    """

    def __init__(self, generator: nn.Module) -> None:
        """Copy ``generator``'s structure and convolutions (the copy stays in eval mode)."""
        super().__init__()
        self.names = norm_parameter_names(generator)
        body = copy.deepcopy(generator).eval()
        self._norms: list[_SampleNorm] = []
        for module_name, module in list(body.named_modules()):
            if isinstance(module, nn.InstanceNorm2d) and module.affine:
                swap = _SampleNorm(module_name, module)
                parent_name, _, child = module_name.rpartition(".")
                parent = body.get_submodule(parent_name) if parent_name else body
                setattr(parent, child, swap)
                self._norms.append(swap)
        for param in body.parameters():
            param.requires_grad_(False)
        self.body = body
        self.config = getattr(generator, "config", None)

    def stack(self, norms: Sequence[Norms]) -> dict[str, torch.Tensor]:
        """Stack per-sample γ/β into N×C tensors on the network's device (reusable)."""
        device = next(self.body.parameters()).device
        return {
            name: torch.stack([n[name] for n in norms]).to(device, torch.float32)
            for name in self.names
        }

    def forward(
        self, x: torch.Tensor, norms: Sequence[Norms] | Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Stylize ``x`` (N×3×H×W, 0–255); sample ``i`` with ``norms[i]``.

        ``norms`` is one :data:`Norms` per sample, or what :meth:`stack` made of them.
        """
        stacked = norms if isinstance(norms, Mapping) else self.stack(norms)
        if len(x) != len(next(iter(stacked.values()))):
            raise ValueError(f"{len(x)} samples, norms for {len(next(iter(stacked.values())))}")
        for norm in self._norms:
            norm.gamma = stacked[f"{norm.name}.weight"]
            norm.beta = stacked[f"{norm.name}.bias"]
        try:
            return self.body(x)
        finally:
            for norm in self._norms:
                norm.gamma = norm.beta = None


def norms_nbytes(norms: Norms) -> int:
    """Return the bytes of one style's γ/β (what each style adds to a shared trunk)."""
    return sum(t.numel() * t.element_size() for t in norms.values())


__all__ = [
    "MultiStyle",
    "Norms",
    "has_affine_instance_norm",
    "norm_parameter_names",
    "norms_nbytes",
    "style_norms",
    "trunk_digest",
]
