"""``stylize apply ... --out FOLDER`` (issue 26): several photos and folders in one run."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import cli_testing
from PIL import Image

from stylenet import cli
from stylenet.batch import ProgressLine, plan

REPO = Path(__file__).resolve().parents[2]
SCREAM = REPO / "demo_styles/scream/generator.safetensors"


def _stylize(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``stylize ARGS`` (the service's entry point, bundled styles), in this process."""
    return cli_testing.stylize(*args, cwd=REPO)


def _photos(folder: Path, content_dir: Path) -> dict[str, Path]:
    """A folder of photos: two at the top (png, jpg), one in a sub-folder, one broken."""
    folder.mkdir()
    (folder / "trip").mkdir()
    sources = sorted(content_dir.glob("*.png"))
    made = {
        "a.png": folder / "a.png",
        "b.jpg": folder / "b.jpg",
        "trip/c.png": folder / "trip" / "c.png",
    }
    for source, target in zip(sources, made.values(), strict=False):
        Image.open(source).convert("RGB").save(target)
    made["broken.jpg"] = folder / "broken.jpg"
    made["broken.jpg"].write_bytes(b"\xff\xd8 not really a JPEG")
    return made


def test_a_folder_and_a_photo_into_a_folder(tmp_path: Path, content_dir: Path) -> None:
    photos = _photos(tmp_path / "photos", content_dir)
    single = tmp_path / "single.png"
    Image.open(sorted(content_dir.glob("*.png"))[-1]).save(single)
    out = tmp_path / "styled"
    missing = tmp_path / "nope.jpg"
    args = ["apply", "--style", "scream", str(tmp_path / "photos"), str(single), str(missing)]
    run = _stylize(*args, "--out", str(out), "--max-side", "48")
    # The broken photo and the missing path are reported and skipped; the rest is written.
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{photos['broken.jpg']}: cannot decode image" in run.stderr
    assert f"skipped {missing}: no such file or folder" in run.stderr
    assert "5/5" in run.stderr  # the progress reached the last photo
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "b.jpg", "single.png", "trip/c.png"]  # named after the photos
    for name in written:
        assert max(Image.open(out / name).size) == 48, name
    assert run.stdout.startswith("4 written, 2 failed in "), run.stdout

    # Again: the results that exist are kept; --force replaces them.
    marker = b"not replaced"
    (out / "a.png").write_bytes(marker)
    again = _stylize("apply", "--style", "scream", str(photos["a.png"]), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "a.png").read_bytes() == marker
    assert "1 already there" in again.stdout
    forced = _stylize(
        "apply", "--style", "scream", str(photos["a.png"]), "--out", str(out), "--force",
        "--format", "webp", "--max-side", "32",
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert (out / "a.png").read_bytes() == marker  # --format webp: another file
    assert Image.open(out / "a.webp").format == "WEBP"
    forced = _stylize(
        "apply", "--style", "scream", str(photos["a.png"]), "--out", str(out), "--force"
    )
    assert forced.returncode == 0 and Image.open(out / "a.png").format == "PNG"
    assert not list(out.rglob(".*partial"))  # written under a temporary name, renamed


def test_the_style_is_loaded_once_and_a_bad_photo_does_not_stop_the_batch(
    tmp_path: Path, content_dir: Path, capsys
) -> None:
    photos = _photos(tmp_path / "photos", content_dir)
    looked_up: list[str] = []

    def find_style(style: str) -> Path:
        looked_up.append(style)
        return SCREAM

    out = tmp_path / "photos" / "styled"  # inside the folder: never read back as input
    argv = ["apply", "--style", "scream", str(tmp_path / "photos"), "--out", str(out)]
    argv += ["--max-side", "32", "--quiet"]
    assert cli.main(argv, find_style=find_style) == 3
    assert looked_up == ["scream"]
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "/4 " not in captured.err  # --quiet: no bar
    assert cli.main(argv, find_style=find_style) == 3  # the results are not new inputs
    assert "0 written, 3 already there" in capsys.readouterr().out
    assert sorted(p.name for p in out.rglob("*.*")) == ["a.png", "b.jpg", "c.png"]
    assert photos["a.png"].exists()


def test_results_never_replace_their_photos_or_each_other(
    tmp_path: Path, content_dir: Path
) -> None:
    photos = _photos(tmp_path / "photos", content_dir)
    same = tmp_path / "photos" / "a.webp"
    Image.open(photos["a.png"]).save(same)
    items, refused = plan([tmp_path / "photos"], tmp_path / "photos")
    assert items == [] and len(refused) == 5
    assert all("would replace it" in why for _, why in refused)
    items, refused = plan([tmp_path / "photos"], tmp_path / "out", suffix=".png")
    assert [i.target.name for i in items] == ["a.png", "b.png", "broken.png", "c.png"]
    assert refused == [(same, f"{photos['a.png']} gives the same result file {tmp_path}/out/a.png")]


def test_mistakes_in_the_command_line_stop_before_any_work(tmp_path: Path) -> None:
    photo = REPO / "demo_styles/scream/style.jpg"
    cases = {
        ("apply", "--style", "scream", str(photo)): "give PHOTO OUTPUT",
        ("apply", "--style", "scream", str(tmp_path), "x.png"): "is a folder",
        ("apply", "--style", "scream", str(photo), "o.png", "--format", "png"): "--format",
        ("apply", "--style", "scream", str(tmp_path), "--out", str(photo)): "not a folder",
        ("apply", "--style", "scream", str(tmp_path), "--out", str(tmp_path / "o")): "no photos",
    }
    for args, says in cases.items():
        run = _stylize(*args)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run
        assert says in run.stderr.strip().splitlines()[-1], (args, run.stderr)
    assert not (tmp_path / "o").exists()


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    piped = io.StringIO()
    bar = ProgressLine(2, piped)
    bar.update(1, "a.jpg")
    bar.message("stylize: skipped b.jpg: broken")
    bar.update(2, "b.jpg")
    bar.close()
    assert piped.getvalue().splitlines() == [
        "[############............] 1/2 a.jpg",
        "stylize: skipped b.jpg: broken",
        "[########################] 2/2 b.jpg",
    ]
    terminal = Terminal()
    bar = ProgressLine(2, terminal)
    bar.update(1, "a.jpg")
    bar.message("stylize: skipped b.jpg: broken")
    bar.update(2, "b.jpg")
    bar.close()
    text = terminal.getvalue()
    assert text.count("\n") == 2 and text.endswith("2/2 b.jpg\n")  # one line, redrawn
    assert "\r\x1b[Kstylize: skipped b.jpg: broken\n[###" in text
