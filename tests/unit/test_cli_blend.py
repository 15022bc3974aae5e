"""``stylize apply --style a:0.7,b:0.3``: a blend of stored styles from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from blend_testing import LONE, build_family_store
from PIL import Image

from service.cli import find_style
from stylenet import load_generator, stylize
from stylenet.blend import blend_generator_bytes
from stylenet.cli import main


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory, tiny_generator_bytes: bytes):
    style = Image.new("RGB", (32, 32), (200, 40, 40))
    folder = tmp_path_factory.mktemp("cli-family")
    path = folder / "style.png"
    style.save(path)
    return build_family_store(folder, tiny_generator_bytes, path.read_bytes())


@pytest.fixture
def store(family, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    url, weights = family
    monkeypatch.setenv("STYLIZE_MODEL_STORE", url)
    return weights


def test_apply_blends_stored_styles(store, photo: Image.Image, tmp_path: Path, capsys):
    source = tmp_path / "photo.png"
    photo.resize((96, 72)).save(source)
    out = tmp_path / "out.png"
    argv = ["apply", "--style", "a:7,b:3", "--cpu-dtype", "float32", str(source), str(out)]
    assert main(argv, find_style=find_style) == 0, capsys.readouterr().err
    blended, _ = load_generator(
        blend_generator_bytes([("a", store["a"]), ("b", store["b"])], [0.7, 0.3])
    )
    expected = stylize(Image.open(source), blended, dtype=torch.float32)
    difference = np.abs(
        np.asarray(Image.open(out), dtype=np.int16) - np.asarray(expected, dtype=np.int16)
    )
    assert difference.max() <= 1


def test_apply_refuses_styles_that_share_no_base(store, photo: Image.Image, tmp_path: Path, capsys):
    source = tmp_path / "photo.png"
    photo.resize((64, 48)).save(source)
    argv = ["apply", "--style", f"a:0.5,{LONE}:0.5", str(source), str(tmp_path / "out.png")]
    assert main(argv, find_style=find_style) == 2
    err = capsys.readouterr().err
    assert "share no base" in err and "trained from scratch" in err
    assert not (tmp_path / "out.png").exists()
    assert (
        main(
            ["apply", "--style", "a:0,b:1", str(source), str(tmp_path / "o.png")],
            find_style=find_style,
        )
        == 2
    )
    assert "must be > 0" in capsys.readouterr().err
