"""Generator files: round trip, metadata, and clear errors for files that cannot be served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_bytes

from stylenet import (
    ModelFileError,
    build_generator,
    generator_to_bytes,
    load_generator,
    save_generator,
)
from stylenet.model_file import read_info


def _model(arch: str = "residual", norm: str = "instance"):
    torch.manual_seed(1)
    return build_generator(arch=arch, norm=norm, width=0.25)


@pytest.mark.parametrize(("arch", "norm"), [("residual", "instance"), ("multiscale", "batch")])
def test_round_trip_is_exact(tmp_path: Path, arch: str, norm: str) -> None:
    model = _model(arch, norm)
    digest = save_generator(
        tmp_path / "g.safetensors",
        model,
        train_params={"seed": 3},
        lossnet="keras-vgg19",
        metrics={"holdout_loss": {"total": 1.5}},
    )
    loaded, info = load_generator(tmp_path / "g.safetensors", expected_sha256=digest)
    assert info.config == model.config and info.sha256 == digest
    assert info.train_params == {"seed": 3} and info.metrics["holdout_loss"]["total"] == 1.5
    assert not loaded.training
    x = torch.rand(1, 3, 40, 40) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_float16_file_is_half_the_size_and_close(tmp_path: Path) -> None:
    model = _model()
    full, half = generator_to_bytes(model), generator_to_bytes(model, dtype="float16")
    assert len(half) < 0.6 * len(full)
    loaded, info = load_generator(half)
    assert info.dtype == "float16"
    x = torch.rand(1, 3, 32, 32) * 255
    with torch.no_grad():
        assert (loaded(x) - model.eval()(x)).abs().max() < 2.0


def test_checksum_mismatch_is_an_error(tmp_path: Path) -> None:
    data = generator_to_bytes(_model())
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_generator(data, expected_sha256="0" * 64)


def test_truncated_and_foreign_files_are_rejected(tmp_path: Path) -> None:
    data = generator_to_bytes(_model())
    for broken in (
        b"",
        b"garbage",
        data[: len(data) // 2],
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}     ",
    ):
        with pytest.raises(ModelFileError):
            load_generator(broken)
    foreign = save_bytes({"w": torch.zeros(2)}, metadata={"format": "something-else"})
    with pytest.raises(ModelFileError, match="not a stylize generator"):
        load_generator(foreign)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_generator(tmp_path / "missing.safetensors")


def _with_metadata(data: bytes, **changes: str) -> bytes:
    from safetensors.torch import load

    length = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + length])["__metadata__"]
    meta.update(changes)
    return save_bytes(load(data), metadata=meta)


def test_mismatched_files_are_rejected() -> None:
    data = generator_to_bytes(_model())
    with pytest.raises(ModelFileError, match="format version 99"):
        read_info(_with_metadata(data, format_version="99"))
    with pytest.raises(ModelFileError, match="pixels"):
        read_info(_with_metadata(data, pixel_convention="bgr-0-1"))
    other = json.dumps({"arch": "residual", "width": 1.0, "norm": "instance", "scales": 5})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_generator(_with_metadata(data, config=other))
    with pytest.raises(ModelFileError, match="metadata is invalid"):
        read_info(_with_metadata(data, config=json.dumps({"arch": "unet"})))
