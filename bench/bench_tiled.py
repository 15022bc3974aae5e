"""Benchmark exact tiled inference against the whole-image forward, and naive tiling's seams.

Each (size, mode) runs in its own process so its peak RSS is its own: ``whole`` (the
generator on the whole image, where it fits: ``--whole-max`` pixels), ``tiled``
(:func:`stylenet.tiled.forward_tiled`, storage ``auto``). Sizes 1024², 2048², 4096² and
8192×5464; the photo is a corpus photo upscaled to each size. Then the seam numbers at
``--seam-size``: the largest and mean difference from the whole-image forward of exact
tiling and of naive tiling (each ``--seam-tile``² tile normalized by its own
statistics, as in jcjohnson/neural-style #122 or neural-doodle #75), along tile edges and
elsewhere, and a figure (``--figure``): the same 1:1 crop across a tile corner of the
exact and the naive result. Prints a table; writes JSON. Not a test.

    python bench/bench_tiled.py                                   # demo Scream, CPU
    python bench/bench_tiled.py --sizes 2048 --modes whole,tiled  # the ≤ 1.5× check
    python bench/bench_tiled.py --poster 8192x5464                # docs/TILED.md's 8K figure
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stylenet import load_generator  # noqa: E402
from stylenet.pixels import image_to_tensor, tensor_to_image  # noqa: E402
from stylenet.tiled import forward_tiled  # noqa: E402

MODEL = REPO / "demo_styles" / "scream" / "generator.safetensors"
PHOTO = REPO / "demo_styles" / "starry-night" / "style.jpg"
SIZES = ("1024x1024", "2048x2048", "4096x4096", "8192x5464")


def _photo(width: int, height: int, source: Path) -> torch.Tensor:
    image = Image.open(source).convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    return image_to_tensor(image)


def child(args: argparse.Namespace) -> None:
    """One measurement, in this process: prints a JSON line."""
    width, height = (int(v) for v in args.child_size.split("x"))
    generator, _ = load_generator(args.model, device=args.device)
    generator.eval()
    image = _photo(width, height, args.photo)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with torch.inference_mode():
        if args.child_mode == "whole":
            out = generator(image.to(args.device))
        else:
            out = forward_tiled(generator, image, tile=args.tile)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "size": args.child_size,
                "mode": args.child_mode,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak / 1024),
                "rss_before_mb": round(base / 1024),
                "mean_out": round(float(out.mean()), 3),
                "cuda_max_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20)
                if torch.cuda.is_available()
                else None,
            }
        )
    )


def _naive(generator: torch.nn.Module, image: torch.Tensor, tile: int) -> torch.Tensor:
    """Each tile through the generator on its own: its own instance statistics."""
    out = torch.empty_like(image)
    for top in range(0, image.shape[2], tile):
        for left in range(0, image.shape[3], tile):
            part = image[:, :, top : top + tile, left : left + tile]
            out[:, :, top : top + tile, left : left + tile] = generator(part)
    return out


def seams(args: argparse.Namespace) -> dict[str, Any]:
    """Differences from the whole-image forward along tile edges and away from them."""
    generator, _ = load_generator(args.model)
    generator.eval()
    size, tile = args.seam_size, args.seam_tile
    image = _photo(size, size, args.photo)
    with torch.inference_mode():
        whole = generator(image)
        results = {
            "exact": forward_tiled(generator, image, tile=tile),
            "naive": _naive(generator, image, tile),
        }
    edge = torch.zeros(size, size, dtype=torch.bool)
    for line in range(tile, size, tile):  # 4 px either side of each tile edge
        edge[line - 4 : line + 4, :] = True
        edge[:, line - 4 : line + 4] = True
    report: dict[str, Any] = {"size": size, "tile": tile}
    for name, out in results.items():
        diff = (out - whole).abs().amax(dim=1)[0]
        report[name] = {
            "max_abs": round(float(diff.max()), 3),
            "mean_abs_edges": round(float(diff[edge].mean()), 3),
            "mean_abs_elsewhere": round(float(diff[~edge].mean()), 3),
        }
    if args.figure:
        crop = 192  # a 1:1 crop centred on a tile corner
        y = x = tile - crop // 2
        panels = [
            tensor_to_image(results[n][:, :, y : y + crop, x : x + crop])
            for n in ("exact", "naive")
        ]
        figure = Image.new("RGB", (crop * 2 + 8, crop), "white")
        figure.paste(panels[0], (0, 0))
        figure.paste(panels[1], (crop + 8, 0))
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        figure.save(args.figure, quality=90)
        report["figure"] = str(args.figure)
    return report


def poster(args: argparse.Namespace) -> dict[str, Any]:
    """A print-size result (``--poster``, e.g. 8192x5464) and a 1:1 crop at a tile corner.

    The whole-image forward does not fit at that size, so naive tiling is compared with
    the exact tiled result itself. Naive tiling is computed only for the four tiles
    around the crop's corner: they are all the crop depends on.
    """
    width, height = (int(v) for v in args.poster.split("x"))
    tile, crop = args.seam_tile, 320
    generator, _ = load_generator(args.model)
    generator.eval()
    image = _photo(width, height, args.photo)
    started = time.perf_counter()
    with torch.inference_mode():
        exact = forward_tiled(generator, image, tile=tile)
        seconds = time.perf_counter() - started
        # The tile corner nearest the centre; naive tiling of the 2×2 tiles around it.
        cy, cx = round(height / 2 / tile) * tile, round(width / 2 / tile) * tile
        top, left = cy - tile, cx - tile
        region = image[:, :, top : top + 2 * tile, left : left + 2 * tile]
        naive = _naive(generator, region, tile)
    exact_region = exact[:, :, top : top + 2 * tile, left : left + 2 * tile]
    diff = (naive - exact_region).abs().amax(dim=1)[0]
    edge = torch.zeros_like(diff, dtype=torch.bool)
    edge[tile - 4 : tile + 4, :] = True
    edge[:, tile - 4 : tile + 4] = True
    y = x = tile - crop // 2
    panels = [
        tensor_to_image(out[:, :, y : y + crop, x : x + crop]) for out in (exact_region, naive)
    ]
    overview = tensor_to_image(exact).resize(
        (crop * 2 + 8, round((crop * 2 + 8) * height / width)), Image.Resampling.LANCZOS
    )
    scale = overview.width / width
    figure = Image.new("RGB", (overview.width, overview.height + 8 + crop), "white")
    figure.paste(overview, (0, 0))
    box = [round(v * scale) for v in (cx - crop / 2, cy - crop / 2, cx + crop / 2, cy + crop / 2)]
    ImageDraw.Draw(figure).rectangle(box, outline=(255, 0, 0), width=2)
    figure.paste(panels[0], (0, overview.height + 8))
    figure.paste(panels[1], (crop + 8, overview.height + 8))
    args.poster_figure.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.poster_figure, quality=88)
    return {
        "size": args.poster,
        "tile": tile,
        "exact_seconds": round(seconds, 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "naive_vs_exact": {
            "max_abs": round(float(diff.max()), 3),
            "mean_abs_edges": round(float(diff[edge].mean()), 3),
            "mean_abs_elsewhere": round(float(diff[~edge].mean()), 3),
        },
        "figure": str(args.poster_figure),
    }


def table(report: dict[str, Any]) -> str:
    """The runs and the seam numbers as Markdown."""
    runs = report["runs"]
    lines = ["| size | mode | seconds | peak RSS MB | vs whole |", "|---|---|---|---|---|"]
    for run in runs:
        whole = [r for r in runs if r["size"] == run["size"] and r["mode"] == "whole"]
        ratio = ""
        if whole and "seconds" in whole[0] and "seconds" in run:
            ratio = f"{run['seconds'] / whole[0]['seconds']:.2f}×"
        seconds, rss = run.get("seconds", "failed"), run.get("peak_rss_mb", "")
        lines.append(f"| {run['size']} | {run['mode']} | {seconds} | {rss} | {ratio} |")
    s = report["seams"]
    lines += [
        "",
        f"| {s['size']}², {s['tile']}² tiles | max abs diff | mean at tile edges | elsewhere |",
        "|---|---|---|---|",
    ]
    for name in ("exact", "naive"):
        r = s[name]
        lines.append(
            f"| {name} | {r['max_abs']} | {r['mean_abs_edges']} | {r['mean_abs_elsewhere']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=",".join(SIZES), help="WxH list (or N for N×N)")
    parser.add_argument("--modes", default="whole,tiled")
    parser.add_argument("--whole-max", type=int, default=2048 * 2048, help="whole-image up to this")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--seam-size", type=int, default=1024)
    parser.add_argument("--seam-tile", type=int, default=512)
    parser.add_argument(
        "--figure", type=Path, default=REPO / "bench" / "results" / "tiled-seams.jpg"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tiled-cpu.json")
    parser.add_argument(
        "--poster", help="WxH: only stylize one print-size image and draw --poster-figure"
    )
    parser.add_argument(
        "--poster-figure", type=Path, default=REPO / "docs" / "images" / "tiled-poster.jpg"
    )
    parser.add_argument("--child-size", help=argparse.SUPPRESS)
    parser.add_argument("--child-mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_size:
        child(args)
        return
    if args.poster:
        result = poster(args)
        out = args.out.with_name(args.out.stem + "-poster.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return
    runs = []
    for size in args.sizes.split(","):
        size = size if "x" in size else f"{size}x{size}"
        width, height = (int(v) for v in size.split("x"))
        for mode in args.modes.split(","):
            if mode == "whole" and width * height > args.whole_max:
                continue
            command = [sys.executable, __file__, "--child-size", size, "--child-mode", mode,
                       "--model", str(args.model), "--photo", str(args.photo),
                       "--device", args.device, "--tile", str(args.tile)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                runs.append({"size": size, "mode": mode, "error": done.stderr[-500:]})
            else:
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "model": str(args.model),
        "runs": runs,
        "seams": seams(args),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}\n")
    print(table(report))


if __name__ == "__main__":
    main()
