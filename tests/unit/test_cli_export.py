"""``stylize export`` and ``stylize apply --backend``: the ONNX model a user gets from the
command line, and apply on ONNX Runtime giving what torch gives."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylenet import cli, generator_to_bytes
from stylenet.generators import build_generator
from stylenet.onnx_export import read_export_metadata

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    path.write_bytes(generator_to_bytes(build_generator(width=0.25)))
    return path


def test_export_writes_a_described_onnx_model(tmp_path: Path, model_file: Path, capsys) -> None:
    out = tmp_path / "tiny.onnx"
    argv = ["export", "--model", str(model_file), "--format", "onnx", "--name", "Tiny", str(out)]
    assert cli.main(argv) == 0
    data = out.read_bytes()
    assert hashlib.sha256(data).hexdigest() in capsys.readouterr().out
    meta = read_export_metadata(data)
    assert meta["style_name"] == "Tiny"
    assert meta["source_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()


def test_export_refuses_what_it_cannot_write(tmp_path: Path, model_file: Path, capsys) -> None:
    assert cli.main(["export", "--model", str(model_file), str(tmp_path / "x.mlmodel")]) == 2
    assert "unknown file type" in capsys.readouterr().err
    multiscale = tmp_path / "multi.safetensors"
    multiscale.write_bytes(generator_to_bytes(build_generator(arch="multiscale", width=0.5)))
    assert cli.main(["export", "--model", str(multiscale), str(tmp_path / "m.onnx")]) == 2
    assert "multiscale" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_apply_on_onnxruntime_gives_what_torch_gives(
    tmp_path: Path, model_file: Path, photo, capsys
) -> None:
    source = tmp_path / "photo.png"
    photo.crop((0, 0, 93, 67)).save(source)
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        outputs[backend] = tmp_path / f"{backend}.png"
        argv = ["apply", "--model", str(model_file), "--backend", backend, "--cpu-dtype"]
        argv += ["float32", str(source), str(outputs[backend])]
        assert cli.main(argv) == 0
    torch_out, ort_out = (
        np.asarray(Image.open(outputs[b]), dtype=np.int16) for b in ("torch", "onnxruntime")
    )
    assert torch_out.shape == ort_out.shape == (67, 93, 3)
    assert np.abs(torch_out - ort_out).max() <= 1
    argv = ["apply", "--model", str(model_file), "--backend", "auto"]
    assert cli.main([*argv, str(source), str(tmp_path / "auto.png")]) == 0
    assert "stylize: backend " in capsys.readouterr().err
