"""Generator structure: sizes, normalization semantics, the paper's contrast property."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stylenet import InvalidParams, build_generator, image_to_tensor
from stylenet.generators import GeneratorConfig

ARCHS = ["residual", "multiscale"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("norm", ["instance", "batch"])
@pytest.mark.parametrize("size", [(16, 16), (17, 33), (64, 64), (101, 77)])
def test_output_has_exact_input_size(arch: str, norm: str, size: tuple[int, int]) -> None:
    generator = build_generator(arch=arch, norm=norm, width=0.5).eval()
    with torch.no_grad():
        out = generator(torch.rand(2, 3, *size) * 255)
    assert out.shape == (2, 3, *size)
    assert out.min() >= 0 and out.max() <= 255


def test_residual_follows_johnson_layout() -> None:
    generator = build_generator(arch="residual")
    convs = [m for m in generator.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in (convs[0], convs[-1])] == [(9, 9), (9, 9)]
    assert [c.out_channels for c in convs[:3]] == [32, 64, 128]
    assert [c.stride for c in convs[1:3]] == [(2, 2), (2, 2)]
    assert len(generator.res) == 5
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in generator.modules())
    assert all(
        isinstance(m, nn.ReflectionPad2d) for m in generator.modules() if "Pad" in type(m).__name__
    )
    light = build_generator(arch="residual", width=0.5)
    assert [c.out_channels for c in light.modules() if isinstance(c, nn.Conv2d)][:3] == [16, 32, 64]


def test_instance_norm_never_keeps_running_statistics() -> None:
    for arch in ARCHS:
        generator = build_generator(arch=arch, norm="instance")
        norms = [m for m in generator.modules() if isinstance(m, nn.InstanceNorm2d)]
        assert norms and all(not m.track_running_stats for m in norms)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in generator.modules())
        assert not any("running" in name for name, _ in generator.named_buffers())


def test_multiscale_joins_coarse_to_fine() -> None:
    generator = build_generator(arch="multiscale", scales=5)
    assert generator.ratios == [16, 8, 4, 2, 1]
    assert generator.out.in_channels == 8 * 5 and generator.out.kernel_size == (1, 1)
    kernels = [
        m.kernel_size[0] for m in generator.branches[0].modules() if isinstance(m, nn.Conv2d)
    ]
    assert kernels == [3, 3, 1]


def _contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    mean = image.mean(dim=(2, 3), keepdim=True)
    return mean + factor * (image - mean)


@pytest.mark.parametrize("arch", ARCHS)
def test_instance_norm_output_ignores_content_contrast(arch: str, photo) -> None:
    """The paper's Fig. 2 property, measured: IN removes the content image's contrast."""
    image = image_to_tensor(photo.resize((96, 96)))
    torch.manual_seed(0)
    instance = build_generator(arch=arch, norm="instance").eval()
    torch.manual_seed(0)
    batch = build_generator(arch=arch, norm="batch")
    # Give BN realistic running statistics, as after training, then switch to eval mode.
    batch.train()
    with torch.no_grad():
        for _ in range(5):
            batch(torch.cat([image, image.flip(-1)]))
    batch.eval()

    def change(generator: nn.Module) -> float:
        with torch.no_grad():
            reference = generator(image)
            return max(
                (generator(_contrast(image, f)) - reference).abs().mean().item() for f in (0.5, 1.5)
            )

    in_change, bn_change = change(instance), change(batch)
    print(f"{arch}: mean |Δ| IN {in_change:.2e}, BN {bn_change:.2e} (0-255 scale)")
    assert in_change < 0.01  # of 255: invariant up to the normalization epsilon
    assert bn_change > 0.1  # an untrained net's outputs hover near grey, so Δ is modest
    assert bn_change > 100 * in_change


def test_invalid_configs_are_rejected() -> None:
    with pytest.raises(InvalidParams, match="arch"):
        GeneratorConfig(arch="unet")
    with pytest.raises(InvalidParams, match="norm"):
        GeneratorConfig(norm="layer")
    with pytest.raises(InvalidParams, match="width"):
        GeneratorConfig(width=0)
