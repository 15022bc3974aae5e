"""Export a generator to ONNX: dynamic height and width, float32 or float16 weights.

The exported graph takes ``image`` (N×3×H×W float32, RGB, 0–255: :mod:`stylenet.pixels`)
and returns ``stylized`` in the same convention and size, any H and W ≥
:data:`~stylenet.generators.MIN_SIDE`, odd sizes included: the residual generator's
upsampling reads its target size from the shapes seen on the way down
(``F.interpolate(size=...)``), which the exporter records as ``Shape``/``Resize`` nodes,
not as constants of the size it was traced at.

Why the TorchScript exporter (``dynamo=False``): torch 2.14's default, the
``torch.export``-based one, needs ``onnxscript`` (another dependency and its own ONNX
ops library), and traces with symbolic shapes that must be declared per dimension; the
TorchScript exporter needs only ``onnx`` (already a dependency for the VGG conversion),
works offline, and its graph matched torch within 0.002 of 255 at 67×93, 130×77, 17×33
and 101×129 after tracing at one size. It is deprecated upstream, so
``tests/unit/test_onnx_export.py`` checks the exported numbers, not just that it runs.

``float16`` keeps the weights as float16 initializers, each followed by a ``Cast`` to
float32: half the download, the same float32 arithmetic, and no loss at all for the
worker's float16 generator files. Instance norm in float16 arithmetic would not stay
within 1/255.

The multiscale generator does not export: its ``adaptive_avg_pool2d`` to
``ceil(H / 2^k)`` has no ONNX form for sizes unknown at export time.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import ExportUnsupported, InvalidParams
from .generators import MIN_SIDE
from .model_file import GeneratorInfo, load_generator
from .pixels import PIXEL_CONVENTION

#: ONNX opset of every export (17: LayerNorm-era ops; onnxruntime-web supports it).
OPSET = 17
EXPORT_DTYPES = ("float32", "float16")
#: The ``format`` metadata value and its version: what a reader of the metadata checks.
FORMAT = "stylize-onnx"
FORMAT_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
#: Odd, unequal sides to trace at, so no size can be mistaken for a constant of the graph.
_TRACE_SIZE = (67, 93)

# torch.onnx's TorchScript exporter keeps global state (the opset, the export mode):
# two exports at once in one process (two API requests) must not interleave.
_EXPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class OnnxExport:
    """An exported model and what describes it."""

    data: bytes
    sha256: str
    dtype: str
    metadata: Mapping[str, str]


def export_metadata(
    info: GeneratorInfo,
    *,
    dtype: str,
    style_id: str = "",
    style_name: str = "",
    version: int | None = None,
) -> dict[str, str]:
    """Return the ``metadata_props`` of an export (all strings, as ONNX stores them).

    ``source_sha256`` is the sha256 of the generator file exported, so a model found in
    the wild can be traced to the weights it came from.
    """
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "style_id": style_id,
        "style_name": style_name,
        "version": "" if version is None else str(version),
        "source_sha256": info.sha256,
        "pixel_convention": PIXEL_CONVENTION,
        "input": f"{INPUT_NAME}: N×3×H×W float32 RGB 0–255, H and W ≥ {MIN_SIDE}",
        "output": f"{OUTPUT_NAME}: N×3×H×W float32 RGB 0–255 (clamp and round for 8-bit)",
        "min_side": str(MIN_SIDE),
        "weights_dtype": dtype,
        "config": json.dumps(info.config.to_dict(), sort_keys=True),
        "exporter": f"torch.onnx TorchScript exporter, torch {torch.__version__}",
    }


def export_onnx(
    source: bytes,
    *,
    dtype: str = "float32",
    style_id: str = "",
    style_name: str = "",
    version: int | None = None,
) -> OnnxExport:
    """Export a generator file (its bytes) to an ONNX model.

    Args:
        source: a generator file (:mod:`stylenet.model_file`).
        dtype: ``float32``, or ``float16`` weights (computed in float32, see above).
        style_id: recorded in the metadata.
        style_name: recorded in the metadata.
        version: recorded in the metadata (the style version exported).

    Raises:
        InvalidParams: ``dtype`` is not one of :data:`EXPORT_DTYPES`.
        ModelFileError: ``source`` is not a generator file this code serves.
        ExportUnsupported: the generator's architecture has no faithful ONNX form.
    """
    if dtype not in EXPORT_DTYPES:
        raise InvalidParams("dtype", f"must be one of {EXPORT_DTYPES}, got {dtype!r}")
    model, info = load_generator(source)
    if info.config.arch != "residual":
        raise ExportUnsupported(
            f"the {info.config.arch} generator does not export to ONNX: its adaptive "
            "average pooling has no ONNX form for sizes unknown at export time"
        )
    meta = export_metadata(
        info, dtype=dtype, style_id=style_id, style_name=style_name, version=version
    )
    data = _to_onnx(model, meta, dtype)
    return OnnxExport(data, hashlib.sha256(data).hexdigest(), dtype, meta)


def _to_onnx(model: nn.Module, meta: Mapping[str, str], dtype: str) -> bytes:
    import onnx  # only exports need it

    buffer = io.BytesIO()
    example = torch.full((1, 3, *_TRACE_SIZE), 128.0)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    with _EXPORT_LOCK, warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter's deprecation notice and its instance_norm "train=True"
        # remark (instance statistics are per image in eval too: that is what we want).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    if dtype == "float16":
        _weights_to_float16(proto)
    proto.doc_string = (
        f"stylize generator {meta.get('style_name') or meta.get('style_id') or ''} "
        f"({PIXEL_CONVENTION})"
    ).strip()
    proto.producer_name = "stylize"
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _weights_to_float16(proto: Any) -> None:
    """Store float32 initializers as float16, each cast back to float32 where it is read."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(init)
        if array.size <= 1:
            continue  # scalars (eps, constants): nothing to save
        name = init.name
        half = numpy_helper.from_array(array.astype(np.float16), f"{name}__f16")
        init.CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=onnx.TensorProto.FLOAT))
    # Casts first: graph nodes must be in topological order.
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])


def read_export_metadata(data: bytes) -> dict[str, str]:
    """Return the ``metadata_props`` of an ONNX model (its bytes) as a dict."""
    import onnx

    proto = onnx.load_from_string(data)
    return {prop.key: prop.value for prop in proto.metadata_props}
