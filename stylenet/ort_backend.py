"""Exported generators on ONNX Runtime's CPU provider: a second backend beside torch.

:class:`OrtGenerator` runs an ONNX export (:mod:`stylenet.onnx_export`) in float32;
:func:`stylize_tensor_ort` is :func:`stylenet.inference.stylize_tensor`'s counterpart
(same pixel convention, same blending). Which backend serves is ``torch``,
``onnxruntime`` or ``auto``: :func:`calibrate` times both on this host at one small
size, on a generator of the default structure (speed depends on the structure, not on
the weights), and picks the faster.

The exact tiled path (:mod:`stylenet.tiled`, images over 2048²) stays on torch whatever
the backend: it runs the network layer by layer with whole-image statistics, which a
single ONNX graph cannot do.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from .errors import ImageError, InvalidParams
from .generators import MIN_SIDE, GeneratorConfig, build_generator
from .inference import blend, stylize, stylize_tensor, tile_for
from .model_file import generator_to_bytes
from .onnx_export import INPUT_NAME, export_onnx
from .pixels import image_to_tensor, resize_within, tensor_to_image

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "auto")
#: Side of the square image :func:`calibrate` times both backends at.
CALIBRATION_SIDE = 256


def onnxruntime_available() -> bool:
    """Whether the ``onnxruntime`` package is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def check_backend(name: str) -> str:
    """Return ``name`` if it is one of :data:`BACKENDS`.

    Raises:
        InvalidParams: it is not.
    """
    if name not in BACKENDS:
        raise InvalidParams("backend", f"must be one of {BACKENDS}, got {name!r}")
    return name


class OrtGenerator:
    """An exported generator in an ONNX Runtime CPU session (float32 in, float32 out)."""

    def __init__(self, model: bytes, *, threads: int = 0) -> None:
        """Build the session.

        Args:
            model: the ONNX model's bytes.
            threads: intra-op threads (0: ONNX Runtime's default, one per core).
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # One graph at a time per session: batching happens in the batcher, and a
        # second pool would compete with the first for the same cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are noise
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.nbytes = len(model)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run an N×3×H×W float32 batch (pixel convention); return the raw output."""
        array = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {INPUT_NAME: array})[0]


def stylize_tensor_ort(
    batch: torch.Tensor,
    generator: OrtGenerator,
    *,
    strength: float = 1.0,
    preserve_color: bool = False,
) -> torch.Tensor:
    """Stylize an N×3×H×W CPU batch with ONNX Runtime; the same contract as ``stylize_tensor``.

    Returns a float32 batch of the same shape, clamped to 0–255.
    """
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise InvalidParams("batch", f"expected N×3×H×W, got {tuple(batch.shape)}")
    if min(batch.shape[-2:]) < MIN_SIDE:
        raise ImageError(f"image is {tuple(batch.shape[-2:])}; both sides must be ≥ {MIN_SIDE} px")
    batch = batch.detach().float().cpu()
    out = torch.from_numpy(generator(batch.numpy()))
    return blend(batch, out, strength, preserve_color)


def quantize_int8(model: bytes) -> bytes:
    """Return ``model`` with its weights dynamically quantized to int8 (ONNX Runtime's).

    ``quantize_dynamic`` quantizes the weights once and the activations per run; for
    these convolutional generators it changes the output visibly (``bench/onnx_backend.py``
    reports by how much), so it is offered for measurement, not served.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="stylize-int8-") as folder:
        source, target = Path(folder, "fp32.onnx"), Path(folder, "int8.onnx")
        source.write_bytes(model)
        # It logs a warning (on the root logger) for every shape tensor it leaves alone.
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        finally:
            logging.disable(previous)
        return target.read_bytes()


@dataclass(frozen=True)
class Calibration:
    """Which backend :func:`calibrate` chose, and what it measured (median seconds)."""

    backend: str
    side: int
    seconds: dict[str, float] = field(default_factory=dict)
    torch_dtype: str = "float32"
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)


def _median_seconds(runs: dict[str, Any], repeats: int) -> dict[str, float]:
    """Time each of ``runs`` ``repeats`` times, interleaved; return the medians.

    Interleaved so that a burst of load from another process (a shared machine) falls
    on both backends alike, not on whichever happened to be measured then.
    """
    for run in runs.values():
        run()  # first run: allocations, ONNX Runtime's and oneDNN's lazy set-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def calibrate(
    *,
    torch_dtype: torch.dtype = torch.float32,
    threads: int = 0,
    side: int = CALIBRATION_SIDE,
    repeats: int = 5,
    config: GeneratorConfig | None = None,
) -> Calibration:
    """Time torch (in ``torch_dtype``) and ONNX Runtime at ``side``²; return the faster.

    Runs on the calling thread, whose torch thread count is what torch gets; ONNX
    Runtime gets ``threads``. Without ``onnxruntime`` installed the answer is torch.
    """
    dtype_name = str(torch_dtype).removeprefix("torch.")
    if not onnxruntime_available():
        return Calibration("torch", side, {}, dtype_name, "onnxruntime is not installed")
    generator = build_generator(config or GeneratorConfig()).eval()
    ort_generator = OrtGenerator(export_onnx(generator_to_bytes(generator)).data, threads=threads)
    image = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 255
    seconds = _median_seconds(
        {
            "torch": lambda: stylize_tensor(image, generator, dtype=torch_dtype),
            "onnxruntime": lambda: stylize_tensor_ort(image, ort_generator),
        },
        repeats,
    )
    chosen = min(seconds, key=lambda name: seconds[name])
    reason = (
        f"at {side}² torch {dtype_name} {seconds['torch'] * 1000:.0f} ms, onnxruntime float32 "
        f"{seconds['onnxruntime'] * 1000:.0f} ms (median of {repeats}, pid {os.getpid()})"
    )
    return Calibration(chosen, side, seconds, dtype_name, reason)


def stylize_image(
    image: Image.Image,
    runner: OrtGenerator,
    generator: nn.Module,
    *,
    max_side: int | None = 1024,
    strength: float = 1.0,
    preserve_color: bool = False,
    tile: int | Literal["auto"] | None = "auto",
) -> Image.Image:
    """:func:`stylenet.inference.stylize` with the whole-image forward on ONNX Runtime.

    An image that ``tile`` sends to exact tiled inference goes to
    :func:`~stylenet.inference.stylize` (torch, ``generator``), as everywhere.
    """
    tensor = image_to_tensor(resize_within(image, max_side))
    options = {"strength": strength, "preserve_color": preserve_color}
    if tile_for(tensor.shape[-2], tensor.shape[-1], tile) is not None:
        return stylize(image, generator, max_side=max_side, tile=tile, **options)
    return tensor_to_image(stylize_tensor_ort(tensor, runner, **options))
