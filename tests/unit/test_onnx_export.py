"""ONNX export (stylenet.onnx_export) and the ONNX Runtime backend (stylenet.ort_backend):
the exported graph equals torch within 1/255 on photos of odd sizes it was not traced
at, carries its metadata, and runs in ONNX Runtime as the service's second backend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from stylenet import (
    ExportUnsupported,
    ImageError,
    InvalidParams,
    generator_to_bytes,
    load_generator,
)
from stylenet.generators import build_generator
from stylenet.inference import stylize_tensor
from stylenet.onnx_export import OPSET, export_onnx, read_export_metadata
from stylenet.pixels import PIXEL_CONVENTION, image_to_tensor

ort_backend = pytest.importorskip("stylenet.ort_backend")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[2]
SCREAM = ROOT / "demo_styles" / "scream" / "generator.safetensors"
# Odd, unequal sides (the export traces at 67×93: 130×77 and 33×129 are sizes it never saw).
SIZES = [(67, 93), (130, 77), (33, 129)]


@pytest.fixture(scope="module")
def scream() -> bytes:
    return SCREAM.read_bytes()


@pytest.fixture(scope="module")
def exports(scream: bytes) -> dict[str, object]:
    return {
        dtype: export_onnx(
            scream, dtype=dtype, style_id="scream", style_name="The Scream", version=3
        )
        for dtype in ("float32", "float16")
    }


@pytest.fixture(scope="module")
def photo_crops(photo) -> dict[tuple[int, int], torch.Tensor]:
    full = image_to_tensor(photo)
    return {(h, w): full[:, :, 100 : 100 + h, 120 : 120 + w].contiguous() for h, w in SIZES}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_export_matches_torch_within_one_level_on_odd_sizes(
    scream, exports, photo_crops, dtype
) -> None:
    model, _ = load_generator(scream)
    export = exports[dtype]
    runner = ort_backend.OrtGenerator(export.data, threads=1)
    for (height, width), image in photo_crops.items():
        expected = stylize_tensor(image, model, dtype=torch.float32)
        got = ort_backend.stylize_tensor_ort(image, runner)
        assert got.shape == (1, 3, height, width)
        # 1/255 of the full scale: on 0–255 pixels, less than one 8-bit level.
        assert (got - expected).abs().max().item() < 1.0, (height, width)


def test_export_metadata_and_dynamic_sizes(scream, exports) -> None:
    export = exports["float32"]
    meta = read_export_metadata(export.data)
    assert meta["style_name"] == "The Scream"
    assert meta["style_id"] == "scream"
    assert meta["version"] == "3"
    assert meta["source_sha256"] == hashlib.sha256(scream).hexdigest()
    assert meta["pixel_convention"] == PIXEL_CONVENTION
    assert meta["weights_dtype"] == "float32"
    assert export.sha256 == hashlib.sha256(export.data).hexdigest()
    proto = onnx.load_from_string(export.data)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    assert OPSET >= 17
    (image,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_float16_export_halves_the_weights(exports) -> None:
    full, half = exports["float32"], exports["float16"]
    assert len(half.data) < 0.6 * len(full.data)
    assert read_export_metadata(half.data)["weights_dtype"] == "float16"
    proto = onnx.load_from_string(half.data)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_what_does_not_export_is_refused() -> None:
    multiscale = generator_to_bytes(build_generator(arch="multiscale", width=0.5, scales=3))
    with pytest.raises(ExportUnsupported, match="multiscale"):
        export_onnx(multiscale)
    residual = generator_to_bytes(build_generator(width=0.25))
    with pytest.raises(InvalidParams, match="dtype"):
        export_onnx(residual, dtype="int8")


def test_ort_backend_blends_like_torch(photo_crops) -> None:
    torch.manual_seed(0)
    data = generator_to_bytes(build_generator(width=0.25))
    model, _ = load_generator(data)
    runner = ort_backend.OrtGenerator(export_onnx(data).data, threads=1)
    image = photo_crops[(67, 93)]
    for options in ({"strength": 0.5}, {"preserve_color": True}):
        expected = stylize_tensor(image, model, dtype=torch.float32, **options)
        got = ort_backend.stylize_tensor_ort(image, runner, **options)
        assert (got - expected).abs().max().item() < 1.0
    with pytest.raises(ImageError):
        ort_backend.stylize_tensor_ort(torch.zeros(1, 3, 8, 40), runner)


def test_int8_quantization_runs_and_changes_the_output(photo_crops) -> None:
    torch.manual_seed(0)
    data = export_onnx(generator_to_bytes(build_generator(width=0.25))).data
    int8 = ort_backend.quantize_int8(data)
    image = photo_crops[(67, 93)]
    fp32 = ort_backend.stylize_tensor_ort(image, ort_backend.OrtGenerator(data, threads=1))
    quantized = ort_backend.stylize_tensor_ort(image, ort_backend.OrtGenerator(int8, threads=1))
    assert quantized.shape == fp32.shape
    assert np.isfinite(quantized.numpy()).all()
    assert onnx.load_from_string(int8).graph.node  # a model, not the fp32 bytes back
    assert int8 != data


def test_calibration_times_both_backends_and_picks_one() -> None:
    from stylenet.generators import GeneratorConfig

    tiny = GeneratorConfig(width=0.25)
    chosen = ort_backend.calibrate(side=64, repeats=1, threads=1, config=tiny)
    assert set(chosen.seconds) == {"torch", "onnxruntime"}
    assert chosen.backend == min(chosen.seconds, key=chosen.seconds.__getitem__)
    assert chosen.torch_dtype == "float32"
    with pytest.raises(InvalidParams):
        ort_backend.check_backend("tensorrt")
