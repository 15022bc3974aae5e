"""CUDA paths: bf16 autocast + channels_last training and inference (skipped without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylenet import TrainParams, build_generator, image_to_tensor, stylize_tensor, train

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_on_cuda_lowers_the_held_out_loss(
    content_dir: Path, style_image, untrained_holdout_loss, channels_last: bool
) -> None:
    params = TrainParams(iterations=200, image_size=64, style_size=64, batch_size=4)
    result = train(style_image, content_dir, params, device="cuda", channels_last=channels_last)
    before, after = untrained_holdout_loss(params, "cuda"), result.metrics["holdout_loss"]
    print(f"held-out total loss on CUDA {before['total']:.3g} -> {after['total']:.3g}")
    assert after["total"] < 0.85 * before["total"]
    assert next(result.generator.parameters()).device.type == "cpu"


def test_bf16_inference_matches_fp32(photo) -> None:
    torch.manual_seed(0)
    generator = build_generator(arch="residual")
    image = image_to_tensor(photo.resize((256, 256)))
    reference = stylize_tensor(image, generator)
    cuda = generator.cuda()
    out = stylize_tensor(image, cuda).cpu()
    assert out.shape == reference.shape
    assert (out - reference).abs().mean() < 2.0  # of 255


def test_gram_is_float32_under_autocast() -> None:
    from stylenet.losses import gram_matrix

    features = torch.rand(2, 8, 16, 16, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gram = gram_matrix(features.bfloat16())
    assert gram.dtype == torch.float32
