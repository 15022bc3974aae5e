"""Inference helpers: sizes, strength, colour preservation, batching, pixel conversions."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylenet import (
    ImageError,
    InvalidParams,
    build_generator,
    image_to_tensor,
    load_generator,
    stylize,
    stylize_tensor,
)
from stylenet.inference import cpu_has_native_bf16, inference_dtype
from stylenet.pixels import fit_within, rgb_to_ycbcr, tensor_to_image, to_rgb, ycbcr_to_rgb

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return build_generator(arch="residual", width=0.25).eval()


def test_result_keeps_the_resized_input_size(generator, photo) -> None:
    out = stylize(photo, generator, max_side=100)
    assert out.size == fit_within(photo.size, 100) == (100, 100)
    odd = photo.crop((0, 0, 67, 45))
    assert stylize(odd, generator, max_side=None).size == (67, 45)


def test_strength_zero_returns_the_content(generator, photo) -> None:
    small = photo.resize((48, 48))
    out = stylize(small, generator, strength=0.0)
    assert (image_to_tensor(out) - image_to_tensor(small)).abs().max() <= 1
    half = stylize_tensor(image_to_tensor(small), generator, strength=0.5)
    full = stylize_tensor(image_to_tensor(small), generator, strength=1.0)
    assert torch.allclose(half, 0.5 * (full + image_to_tensor(small)), atol=1e-3)


def test_preserve_color_keeps_the_content_chroma(generator, photo) -> None:
    content = image_to_tensor(photo.resize((48, 48)))
    out = stylize_tensor(content, generator, preserve_color=True)
    chroma = rgb_to_ycbcr(out)[:, 1:] - rgb_to_ycbcr(content)[:, 1:]
    plain = stylize_tensor(content, generator)
    assert chroma.abs().mean() < 2.0  # up to clamping into 0..255
    assert (
        rgb_to_ycbcr(plain)[:, 1:] - rgb_to_ycbcr(content)[:, 1:]
    ).abs().mean() > 5 * chroma.abs().mean()
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(content)), content, atol=1e-3)


def test_batch_equals_one_by_one(generator, photo) -> None:
    a = image_to_tensor(photo.resize((40, 32)))
    b = image_to_tensor(photo.rotate(90).resize((40, 32)))
    batch = stylize_tensor(torch.cat([a, b]), generator)
    assert torch.allclose(batch[1:], stylize_tensor(b, generator), atol=1e-3)


def test_bad_inputs_are_clear_errors(generator) -> None:
    with pytest.raises(ImageError, match="≥ 16"):
        stylize_tensor(torch.zeros(1, 3, 8, 64), generator)
    with pytest.raises(InvalidParams, match="strength"):
        stylize_tensor(torch.zeros(1, 3, 32, 32), generator, strength=1.5)
    with pytest.raises(InvalidParams, match="N×3×H×W"):
        stylize_tensor(torch.zeros(3, 32, 32), generator)


def test_exif_orientation_and_alpha_are_honoured() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert to_rgb(Image.open(buffer)).size == (20, 40)
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)


def test_pixel_round_trip_is_lossless(photo) -> None:
    tensor = image_to_tensor(photo)
    assert tensor.dtype == torch.float32 and tensor.shape == (1, 3, 512, 512)
    assert tensor.min() >= 0 and tensor.max() <= 255
    assert tensor_to_image(tensor).tobytes() == photo.tobytes()


def test_bf16_detection_reads_the_cpu_flags() -> None:
    assert cpu_has_native_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16 fma\n")
    assert cpu_has_native_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_has_native_bf16("model name\t: avx512_bf16 in a name, not a flag\n")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert inference_dtype(cuda, "float32") == torch.bfloat16  # CUDA always autocasts
    assert inference_dtype(cpu) == torch.float32
    assert inference_dtype(cpu, "bfloat16") == torch.bfloat16
    native = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert inference_dtype(cpu, "auto") == native
    with pytest.raises(InvalidParams, match="cpu_dtype"):
        inference_dtype(cpu, "float16")


def test_bf16_on_cpu_stays_close_to_float32(photo) -> None:
    """A trained generator (the bundled Scream): bf16 moves pixels by well under 1 of 255."""
    data = (REPO / "demo_styles/scream/generator.safetensors").read_bytes()
    generator, _ = load_generator(data)
    batch = image_to_tensor(photo.resize((128, 128)))
    full = stylize_tensor(batch, generator, dtype=torch.float32).round()
    half = stylize_tensor(batch, generator, dtype=torch.bfloat16).round()
    assert half.dtype == torch.float32 and half.shape == full.shape
    diff = (half - full).abs()
    print(f"bf16 vs fp32: mean {diff.mean():.3f}, max {diff.max():.0f} of 255")
    assert 0 < diff.mean() < 1.0  # 0 would mean bf16 was not used at all
    assert torch.quantile(diff.flatten(), 0.99) <= 4
