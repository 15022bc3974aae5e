"""The ``stylize`` command: train then apply, and clear errors."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import cli_testing
import numpy as np
import pytest
from PIL import Image

from stylenet import cli


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m stylenet.cli ARGS`` (no model store), in this process."""
    return cli_testing.run_main(cli.main, *args, env=env, clean=False)


def test_train_then_apply(tmp_path: Path, content_dir: Path, style_image) -> None:
    style = tmp_path / "style.png"
    style_image.save(style)
    model = tmp_path / "style.safetensors"
    trained = _run(
        "train",
        "--style",
        str(style),
        "--content",
        str(content_dir),
        "--out",
        str(model),
        "--iterations",
        "3",
        "--image-size",
        "64",
        "--style-size",
        "64",
        "--batch-size",
        "1",
        "--width",
        "0.25",
        "--dtype",
        "float16",
        "--json",
    )
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["metrics"]["iterations"] == 3 and len(report["sha256"]) == 64
    assert "3/3" in trained.stderr  # the progress bar
    out = tmp_path / "out.png"
    applied = _run(
        "apply",
        "--model",
        str(model),
        str(content_dir / "chelsea.png"),
        str(out),
        "--max-side",
        "64",
        "--strength",
        "0.8",
        "--preserve-color",
    )
    assert applied.returncode == 0, applied.stderr
    assert max(Image.open(out).size) == 64
    # The compute dtype is a choice; float32 and bfloat16 give nearly the same picture.
    outputs = []
    for dtype in ("float32", "bfloat16"):
        target = tmp_path / f"out-{dtype}.png"
        run = _run(
            "apply",
            "--model",
            str(model),
            str(content_dir / "chelsea.png"),
            str(target),
            "--cpu-dtype",
            dtype,
        )
        assert run.returncode == 0, run.stderr
        outputs.append(np.asarray(Image.open(target), dtype=np.int16))
    assert 0 < np.abs(outputs[0] - outputs[1]).mean() < 2
    bad = _run("apply", "--model", str(model), "a.png", "b.png", "--cpu-dtype", "float16")
    assert bad.returncode == 2 and "--cpu-dtype" in bad.stderr


def test_errors_are_one_clear_line(tmp_path: Path, content_dir: Path) -> None:
    missing = _run(
        "train",
        "--style",
        str(content_dir / "chelsea.png"),
        "--content",
        str(content_dir),
        "--out",
        str(tmp_path / "x.safetensors"),
        "--iterations",
        "1",
        env={"STYLIZE_CACHE_DIR": str(tmp_path / "empty-cache")},
    )
    assert missing.returncode == 2
    assert "stylize lossnet fetch --source keras-vgg19" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = _run("apply", "--model", str(content_dir / "chelsea.png"), "a.png", "b.png")
    assert bad.returncode == 2 and "not a generator file" in bad.stderr
    params = _run("train", "--style", "s.png", "--content", ".", "--out", "x", "--image-size", "4")
    assert params.returncode == 2 and "image_size" in params.stderr


def test_train_ends_with_a_short_summary(
    tmp_path: Path, content_dir: Path, style_image, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 26: not ~140 lines of JSON (``--json`` keeps them), a summary for people."""
    style = tmp_path / "style.png"
    style_image.save(style)
    model = tmp_path / "style.safetensors"
    argv = ["train", "--style", str(style), "--content", str(content_dir), "--out", str(model)]
    tiny = ["--iterations", "3", "--image-size", "64", "--style-size", "64", "--batch-size", "1"]
    tiny += ["--width", "0.25", "--holdout", "1", "--quiet", "--device", "cpu"]
    tiny += ["--score", "--yardstick-steps", "2"]
    assert cli.main([*argv, *tiny]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 6 and not any("{" in line for line in lines), lines
    text = "\n".join(lines)
    assert lines[0] == f"wrote {model}"
    assert hashlib.sha256(model.read_bytes()).hexdigest() in text
    assert re.search(r"trained in +\d+\.\d s \(3 steps on cpu\)", text), text
    assert re.search(r"held-out loss +\d", text), text
    assert re.search(r"quality r +(at most )?-?\d\.\d{3}", text), text
