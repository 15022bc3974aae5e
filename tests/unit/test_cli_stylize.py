"""The ``stylize`` command as people type it: help, version, one-line errors, styles by id,
and the README's CLI example."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from cli_testing import stylize as in_process
from PIL import Image

from model_store import open_store
from service.cli import find_style
from stylenet import TrainParams
from stylenet.cli import CliError

REPO = Path(__file__).resolve().parents[2]
STYLIZE = [sys.executable, "-m", "service.cli"]


def _stylize(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    python: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``stylize ARGS`` (``python``: interpreter options) with no STYLIZE_* but ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    if "STYLIZE_CACHE_DIR" in os.environ:
        environ["STYLIZE_CACHE_DIR"] = os.environ["STYLIZE_CACHE_DIR"]
    environ["PYTHONPATH"] = str(REPO)
    environ.update(env or {})
    command = [sys.executable, *python, *STYLIZE[1:], *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, cwd=cwd or REPO, env=environ
    )


def test_help_and_version() -> None:
    shown = _stylize("--help")
    assert shown.returncode == 0
    assert "commands:" in shown.stdout and "apply" in shown.stdout
    assert not re.search(r"``|:mod:|never imported", shown.stdout)  # no docstring internals
    version = _stylize("--version")
    assert version.returncode == 0 and re.fullmatch(r"stylize \S+\n", version.stdout)


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_neither_torch_nor_the_app(flag: str) -> None:
    """Issue 26: they took 9-16 s importing torch and the whole service."""
    shown = _stylize(flag, python=["-X", "importtime"])
    assert shown.returncode == 0, shown.stderr[-2000:]
    loaded = {
        line.rsplit("|", 1)[1].strip()
        for line in shown.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"service", "argparse"} <= loaded  # the importtime report is there
    heavy = {"torch", "stylenet", "fastapi", "numpy", "PIL", "service.app"}
    found = sorted({name for name in loaded if name in heavy or name.split(".")[0] in heavy})
    assert found == [], f"{flag} loads {sorted(heavy & {n.split('.')[0] for n in found})}"


def test_train_help_gives_each_option_a_meaning_and_default() -> None:
    shown = in_process("train", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    for name in TrainParams.__dataclass_fields__:
        if name in ("content_layers", "style_layers"):
            continue  # JSON objects: the API's params only
        flag = "--" + name.replace("_", "-")
        assert flag in text, flag
    assert text.count("(default:") >= 21
    assert "--arch {residual,multiscale}" in text and "{ulyanov,johnson}" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--device", "gpu"], "'gpu' is not a device"),
        (["--max-side", "0"], "--max-side: must be at least 16"),
        (["--strength", "2"], "--strength: must be within 0..1"),
        (["{tmp}/out.xyz"], "unknown file type '.xyz'"),
        (["{tmp}/no/such/folder/out.png"], "does not exist"),
        (["--style", "nope"], "--style nope: no such style"),
    ],
)
def test_mistakes_are_one_line_without_a_traceback(
    tmp_path: Path, args: list[str], says: str
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    output = next((a for a in args if a.startswith(str(tmp_path))), str(tmp_path / "out.png"))
    options = [a for a in args if a != output]
    if "--style" not in options:
        options = ["--style", "scream", *options]
    photo = REPO / "demo_styles/starry-night/style.jpg"
    result = in_process("apply", *options, str(photo), output, cwd=tmp_path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert says in result.stderr.strip().splitlines()[-1], result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    photo = REPO / "demo_styles/starry-night/style.jpg"
    result = in_process(
        "apply", "--style", "scream", "--device", "cuda", str(photo), str(tmp_path / "o.png")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "stylize: error: --device cuda: this machine has no CUDA GPU; use --device cpu"
    )


def test_readme_cli_example_runs_as_written_on_a_cpu(tmp_path: Path, content_dir: Path) -> None:
    """The README's CLI block, in a folder laid out like the repo after `make run`.

    Only the iteration count is lowered (the README's 100 take minutes on a CPU).
    """
    readme = (REPO / "README.md").read_text()
    block = readme.split("or offline, with the library's CLI:", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    lines = [line for line in block.splitlines() if line.startswith(".venv/bin/stylize ")]
    assert [shlex.split(line)[1] for line in lines] == ["train", "apply", "apply"]
    (tmp_path / "demo_styles").symlink_to(REPO / "demo_styles")
    shutil.copytree(content_dir, tmp_path / "data/content")
    for line in lines:
        args = shlex.split(line)[1:]
        if "--iterations" in args:
            args[args.index("--iterations") + 1] = "2"
        result = _stylize(*args, cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr[-2000:])
    photo = Image.open(tmp_path / "data/content/chelsea.png").size  # under 512 px here
    for name in ("chelsea-mine.png", "chelsea-starry.png"):
        assert Image.open(tmp_path / name).size == photo


def _store_with(tmp_path: Path, names: dict[str, str]) -> str:
    """A model store holding a published style per ``id -> display name``; return its URL."""
    url = (tmp_path / "models").as_uri()
    store = open_store(url)
    weights = (REPO / "demo_styles/scream/generator.safetensors").read_bytes()
    painting = (REPO / "demo_styles/scream/style.jpg").read_bytes()
    for style_id, name in names.items():
        store.create(painting, name=name, style_id=style_id)
        store.publish(style_id, weights)
    return url


def test_apply_style_takes_a_display_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 26: ``--style Mosaic`` failed; only ids worked."""
    url = _store_with(tmp_path, {"m0s41c": "Mosaic"})
    monkeypatch.setenv("STYLIZE_MODEL_STORE", url)
    weights = (REPO / "demo_styles/scream/generator.safetensors").read_bytes()
    for given in ("Mosaic", "mosaic", " MOSAIC ", "m0s41c"):
        assert find_style(given) == weights, given
    # A bundled style by its name (the store does not hold it) and by its id.
    bundled = REPO / "demo_styles/scream/generator.safetensors"
    assert find_style("the  scream") == find_style("scream") == bundled
    photo = REPO / "demo_styles/starry-night/style.jpg"
    out = tmp_path / "mosaic.png"
    result = in_process(
        "apply", "--style", "Mosaic", str(photo), str(out), "--max-side", "48",
        env={"STYLIZE_MODEL_STORE": url},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert max(Image.open(out).size) == 48


def test_a_name_two_styles_share_asks_for_an_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _store_with(tmp_path, {"mosaic-a": "Mosaic", "mosaic-b": "mosaic", "other": "Other"})
    monkeypatch.setenv("STYLIZE_MODEL_STORE", url)
    with pytest.raises(CliError, match=r"2 styles have that name.*mosaic-a \(Mosaic\), mosaic-b"):
        find_style("MOSAIC")
    with pytest.raises(CliError, match="no such style"):
        find_style("Mosaics")
    photo = REPO / "demo_styles/starry-night/style.jpg"
    result = in_process(
        "apply", "--style", "Mosaic", str(photo), str(tmp_path / "out.png"),
        env={"STYLIZE_MODEL_STORE": url},
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "pass one of their ids: mosaic-a (Mosaic), mosaic-b (mosaic)" in last, last
