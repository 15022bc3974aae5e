"""Generators on the device: loading them and running a batch. Device-thread code only.

Pixels cross the thread boundary as ``H×W×3`` uint8 arrays (4× fewer bytes to copy to a
GPU than float32); here they become the stylenet convention exactly as
:func:`stylenet.pixels.image_to_tensor` makes it (RGB, float 0–255, NCHW) and go back to
uint8 as :func:`stylenet.pixels.tensor_to_image` does (clamp, round). The forward pass
is :func:`stylenet.stylize_tensor` (bf16 autocast on CUDA; on CPU the ``cpu_dtype``
setting; NCHW layout: channels_last measured 10–40 % slower on an H100 for these
instance-norm networks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from service.codecs import host_pixels
from stylenet import GeneratorInfo, load_generator, stylize_tensor
from stylenet.devices import wait_idle
from stylenet.footprint import forward_bytes_per_pixel, forward_flops_per_pixel
from stylenet.inference import blend, stylize_tiled
from stylenet.ort_backend import OrtGenerator

log = logging.getLogger(__name__)

#: Process memory (RSS) per byte of live tensors in a CPU forward: the allocator's and
#: oneDNN's slack. Measured on a width-1 residual net: 960-970 B/px of RSS at 1024×768
#: and 2048×1536 against 717-720 B/px of traced tensors (``stylenet.footprint``). The
#: runtime prices with the larger of it and the slack measured on its host at start
#: (:mod:`service.runtime.calibration`): oneDNN's kernels and layouts differ between CPUs
#: (an AVX512-BF16 AMD EPYC without AMX held 750 B/px of RSS in a bfloat16 forward
#: against 378 B/px traced: 1.98).
HOST_SLACK = 1.35
#: Host bytes per pixel of a batch besides the traced forward (which counts its float
#: input and output): the stacked uint8 batch, the uint8 result and its copy (3 + 3 + 3).
BATCH_BYTES_PER_PIXEL = 9


@dataclass(frozen=True)
class BlendOptions:
    """Per-request options applied after the shared forward pass."""

    strength: float = 1.0
    preserve_color: bool = False

    @property
    def identity(self) -> bool:
        """Whether the raw generator output is the answer."""
        return self.strength >= 1.0 and not self.preserve_color


@dataclass(eq=False)
class LoadedGenerator:
    """A generator resident on the device, as the cache holds it.

    Attributes:
        key: the cache key (style, incarnation, version).
        model: the eager network, eval mode, float32 weights.
        info: what the generator file says about itself.
        nbytes: device memory of its parameters and buffers.
        compiled: ``torch.compile`` of ``model`` when enabled, used only for shapes in
            ``compiled_shapes`` (compiled ahead of time, at warm-up), so no request
            ever waits for a compilation.
        ort: the style's ONNX export in ONNX Runtime when that backend serves (the
            batcher's forwards run there; the tiled lane keeps ``model``).
        host_bytes_per_pixel: host memory of its forward per image pixel (0 on a GPU).
        flops_per_pixel: arithmetic of its forward per image pixel, what time-aware
            admission prices (:mod:`service.runtime.pace`).
    """

    key: Hashable
    model: nn.Module
    info: GeneratorInfo
    nbytes: int
    compiled: nn.Module | None = None
    compiled_shapes: set[tuple[int, int]] = field(default_factory=set)
    host_bytes_per_pixel: float = 0.0
    ort: OrtGenerator | None = None
    flops_per_pixel: float = 0.0


def module_nbytes(model: nn.Module) -> int:
    """Return the bytes held by a module's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def load_on_device(
    key: Hashable,
    data: bytes,
    device: torch.device,
    *,
    compile_model: bool = False,
    dtype: torch.dtype = torch.float32,
    slack: float = HOST_SLACK,
) -> LoadedGenerator:
    """Build a generator from verified file bytes onto ``device`` (device thread).

    ``dtype``: the compute dtype it will serve in, which its forward's memory depends on;
    ``slack``: RSS per traced byte of a CPU forward on this host (:data:`HOST_SLACK`).

    Raises:
        stylenet.ModelFileError: the file cannot be served by this code.
    """
    model, info = load_generator(data, device=device)
    compiled = None
    if compile_model:
        # dynamic=False: one specialised graph per warmed shape, see LoadedGenerator.
        compiled = torch.compile(model, dynamic=False)
    per_pixel = 0.0
    if device.type == "cpu":
        traced = forward_bytes_per_pixel(info.config, dtype)
        per_pixel = traced * slack + BATCH_BYTES_PER_PIXEL
    return LoadedGenerator(
        key,
        model,
        info,
        module_nbytes(model),
        compiled,
        host_bytes_per_pixel=per_pixel,
        flops_per_pixel=forward_flops_per_pixel(info.config),
    )


@torch.inference_mode()
def warm(loaded: LoadedGenerator, side: int, dtype: torch.dtype) -> float:
    """Run one ``side``×``side`` forward (compiling that shape if enabled); return seconds."""
    started = time.perf_counter()
    batch = torch.full((1, 3, side, side), 128.0, device=next(loaded.model.parameters()).device)
    if loaded.ort is not None:
        loaded.ort(batch.numpy())
    elif loaded.compiled is not None:
        stylize_tensor(batch, loaded.compiled, dtype=dtype)
        loaded.compiled_shapes.add((side, side))
    else:
        stylize_tensor(batch, loaded.model, dtype=dtype)
    _sync(batch.device)
    return time.perf_counter() - started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def stylize_batch(
    loaded: LoadedGenerator,
    images: Sequence[np.ndarray | torch.Tensor],
    options: Sequence[BlendOptions],
    dtype: torch.dtype,
    *,
    on_device: bool = False,
) -> list[np.ndarray] | list[torch.Tensor]:
    """Stylize same-shape ``H×W×3`` uint8 images in one forward; return uint8 images.

    Runs on the device thread, computing in ``dtype`` (see
    :func:`stylenet.inference.inference_dtype`). ``options`` apply per image after the
    shared forward. Images are host arrays or tensors already on the device (device
    JPEG decode). With ``on_device`` the results are ``H×W×3`` views of one uint8 tensor
    on the device, complete when returned, for the device JPEG encoder; otherwise
    numpy arrays.
    """
    device = next(loaded.model.parameters()).device
    # .contiguous(): the permuted view has channels_last strides; keep NCHW (see above).
    batch = _device_batch(images, device).permute(0, 3, 1, 2).float().contiguous()
    height, width = batch.shape[-2:]
    if loaded.ort is not None:
        out = torch.from_numpy(loaded.ort(batch.numpy())).clamp_(0, 255)
    elif loaded.compiled is not None and (height, width) in loaded.compiled_shapes:
        # Compiled graphs exist for batch size 1 only; on CPU a batch buys little anyway.
        out = torch.cat(
            [
                stylize_tensor(batch[i : i + 1], loaded.compiled, dtype=dtype)
                for i in range(len(images))
            ]
        )
    else:
        out = stylize_tensor(batch, loaded.model, dtype=dtype)
    for i, opt in enumerate(options):
        if not opt.identity:
            out[i : i + 1] = blend(
                batch[i : i + 1], out[i : i + 1], opt.strength, opt.preserve_color
            )
    out_u8 = out.round_().to(torch.uint8)
    if on_device:
        wait_idle(device)  # the codec threads read these tensors
        return list(out_u8.permute(0, 2, 3, 1))
    return list(host_pixels(out_u8.permute(0, 2, 3, 1).contiguous()))


def _device_batch(
    images: Sequence[np.ndarray | torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Stack ``H×W×3`` uint8 images into an N×H×W×3 tensor on ``device``.

    On CUDA, host arrays go through pinned memory with a non-blocking copy; device
    tensors (device-decoded JPEG) are stacked where they are.
    """
    if all(isinstance(image, np.ndarray) for image in images):
        host = torch.from_numpy(np.stack(images))  # type: ignore[arg-type]
        if device.type == "cuda":
            host = host.pin_memory()
        return host.to(device, non_blocking=True)
    parts = []
    for image in images:
        # np.array: a copy, as np.stack makes (decoded arrays are read-only).
        part = torch.from_numpy(np.array(image)) if isinstance(image, np.ndarray) else image
        if device.type == "cuda" and part.device.type == "cpu":
            part = part.pin_memory()
        parts.append(part.to(device, non_blocking=True))
    return torch.stack(parts)


def stylize_large(
    loaded: LoadedGenerator,
    image: np.ndarray,
    options: BlendOptions,
    tile: int,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Stylize one large ``H×W×3`` uint8 image by exact tiled inference; return uint8.

    Runs on the large-image lane's thread, in float32, with whole-image instance
    statistics (:func:`stylenet.inference.stylize_tiled`): memory bounded by ``tile``.
    ``progress(done, total)`` hears of each band; what it raises stops the forward.
    """
    with torch.inference_mode():
        # One float copy of the (read-only) decoded array.
        tensor = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1).unsqueeze(0)
        out = stylize_tiled(
            tensor,
            loaded.model,
            tile=tile,
            strength=options.strength,
            preserve_color=options.preserve_color,
            progress=progress,
        )
        return out.round_().to(torch.uint8)[0].permute(1, 2, 0).contiguous().cpu().numpy()


def release_memory(device: torch.device) -> None:
    """Return freed device memory to the driver (after evictions); device thread."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
