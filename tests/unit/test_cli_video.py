"""``stylize apply`` on a clip: the CLI end to end, in process, on a tiny generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylenet.cli import main
from stylenet.generators import build_generator
from stylenet.model_file import save_generator
from tests.clip_testing import clip_summary, make_clip


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_generator(path, build_generator(arch="residual", width=0.25))
    return path


def test_apply_writes_a_clip_with_the_audio(model_file: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.mp4"
    source.write_bytes(make_clip("mp4", frames=5, width=80, height=48, audio=True))
    out = tmp_path / "out.mp4"
    argv = ["apply", "--model", str(model_file), str(source), str(out), "--max-side", "64"]
    assert main([*argv, "--temporal", "flow", "--flow-weight", "0.4"]) == 0
    made = clip_summary(out.read_bytes())
    assert made["frames"] == 5 and made["size"] == (64, 38) and made["audio"] == "aac"


def test_apply_converts_a_gif_to_webp_and_refuses_a_photo_suffix(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.gif"
    source.write_bytes(make_clip("gif", frames=3))
    assert main(["apply", "--model", str(model_file), str(source), str(tmp_path / "o.webp")]) == 0
    assert (tmp_path / "o.webp").read_bytes()[:4] == b"RIFF"
    assert main(["apply", "--model", str(model_file), str(source), str(tmp_path / "o.png")]) == 2
    assert "unknown file type" in capsys.readouterr().err
