"""What an inference forward holds in memory: bytes of live tensors per image pixel.

A feed-forward generator's activations scale with the image: a width-1 residual net
keeps 64 channels of float32 at full resolution while it upsamples (the upsampled map
and its padded copy), so one 2048×1536 forward holds ~2.2 GB of tensors at its peak
(and ~3 GB of process memory on a CPU, allocator slack included). Admission
(``service.runtime.budget``) needs that figure before it runs the forward.

It is traced, not tabled: the generator is built on the ``meta`` device (shapes only, no
memory, no arithmetic) and run once under a dispatch mode that adds up the bytes of the
tensors each operation creates and takes them off when Python lets go of them; the peak
over the forward, divided by the pixels, is the figure. Everything in the forward
scales with the pixels, so the figure holds at any size: 732 B/px traced at 64² for a
width-1 net, 717 at 1024×768 on a real CPU run of the same trace; in bfloat16, half.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .generators import GeneratorConfig, build_generator

#: The side of the traced forward: small (a trace takes milliseconds), every size scales.
TRACE_SIDE = 64


class _LiveBytes(TorchDispatchMode):
    """Counts the storage bytes of the tensors created under it that are still referenced."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            key = storage._cdata  # one storage, however many views (in-place ops, ReLU)
            if key in self._sizes:
                continue
            self._sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(tensor, self._release, key)
        return out

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)


@functools.lru_cache(maxsize=64)
def forward_bytes_per_pixel(config: GeneratorConfig, dtype: torch.dtype = torch.float32) -> float:
    """Peak bytes of live tensors per pixel of one image in a forward of ``config``.

    ``dtype``: the compute dtype (:func:`stylenet.inference.inference_dtype`); bfloat16
    halves the activations (traced as a bfloat16 network: 378 B/px for a width-1 net,
    against 381 for the float32 network under CPU autocast, which serving runs). The
    float32 input batch is counted; the weights are not (they are resident anyway).
    Multiply by ``height × width × batch`` for a forward's peak.
    """
    with torch.device("meta"):
        generator = build_generator(config).eval().to(dtype)
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        image = torch.empty(1, 3, TRACE_SIDE, TRACE_SIDE, device="meta")
        generator(image.to(dtype))
        del image
    return mode.peak / (TRACE_SIDE * TRACE_SIDE)


__all__ = ["TRACE_SIDE", "forward_bytes_per_pixel"]
