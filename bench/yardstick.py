"""Score a trained generator file against image optimization: the yardstick r.

For each held-out photo (never trained on), r = the style loss Gatys-style optimization
reaches at the generator's content loss, divided by the generator's style loss, on the
loss the generator was trained with (its recorded training parameters, the style at its
recorded ``style_size``). r = 1: as good as optimization; r < 1: worse. See
``stylenet/yardstick.py`` for the definition and its edge cases.

    python bench/yardstick.py --photos held-out/ --size 256 --steps 300 \\
        --model demo_styles/starry-night/generator.safetensors --out yardstick.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from stylenet import TrainParams
from stylenet.data import central_crops, find_images
from stylenet.model_file import load_generator
from stylenet.score import SCORE_STEPS
from stylenet.train import build_loss, style_tensor
from stylenet.yardstick import DEFAULT_LR, DEFAULT_STYLE_RAMP, yardstick


def _previous(args: argparse.Namespace, setup: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-photo entries of an earlier run of the same setup in ``--out`` (``--resume``)."""
    if not (args.resume and args.out and args.out.exists()):
        return {}
    old = json.loads(args.out.read_text())
    if any(old.get(k) != v for k, v in setup.items()):
        raise SystemExit(f"{args.out} holds another setup: drop --resume or change --out")
    return {e["name"]: e for e in old.get("images", [])}


def score(args: argparse.Namespace) -> dict[str, Any]:
    """Load the generator, its loss and the photos; return the yardstick report.

    Photos are scored one at a time and ``--out`` is rewritten after each, so an
    interrupted CPU run (an hour for 4 photos at 256 px) keeps what it measured;
    ``--resume`` skips the photos already there.
    """
    device = torch.device(args.device)
    generator, info = load_generator(args.model, device=device)
    params = TrainParams.from_dict(info.train_params)
    style_size = args.style_size or params.style_size
    style = args.style or Path(args.model).with_name("style.jpg")
    loss = build_loss(params, device, args.cache_dir)
    loss.set_style(style_tensor(style, style_size).to(device))
    paths = sorted(find_images(args.photos))
    if args.exclude:
        paths = [p for p in paths if p.stem not in set(args.exclude)]
    # The trainer's held-out protocol: shorter side to --size, then the central square.
    kept = [(p.name, crop) for p, crop in central_crops(paths, args.size)]
    if not kept:
        raise SystemExit(f"no readable photos under {args.photos}")
    setup = {
        "model": str(args.model),
        "style": str(style),
        "steps": args.steps,
        "lr": args.lr,
        "style_ramp": args.style_ramp,
        "image_size": args.size,
        "style_size": style_size,
    }
    done = _previous(args, setup)
    entries: list[dict[str, Any]] = []
    for name, image in kept:
        if name not in done:
            one = yardstick(
                generator,
                loss,
                [image],
                args.steps,
                lr=args.lr,
                device=device,
                names=[name],
                style_ramp=args.style_ramp,
                style_size=style_size,
                keep_trajectories=args.trajectories,
            )
            done[name] = one["images"][0]
        entries.append(done[name])
        scores = [e["r"] for e in entries if e["r"] is not None]
        report = {
            **setup,
            "device": args.device,
            "train_params": params.to_dict(),
            "model_holdout_images": sorted(info.metrics.get("holdout_images", [])),
            "r_mean": round(sum(scores) / len(scores), 4) if scores else None,
            "extrapolated": any(e["extrapolated"] for e in entries),
            "seconds": round(sum(e["seconds"] for e in entries), 2),
            "images": entries,
        }
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return report


def markdown(report: dict[str, Any]) -> str:
    """Render the per-photo scores and their mean as a Markdown table."""

    def fmt(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    lines = [
        "| photo | content (G) | style (G) | optimization style at G's content | r "
        "| steps to G's style | optimization final content / style | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in report["images"]:
        bound = {"upper": " (≤, upper bound)", "lower": " (≥, lower bound)"}.get(e["bound"], "")
        final = e["optimization_final"]
        lines.append(
            f"| {e['name']} | {fmt(e['content'], '.3f')} | {fmt(e['style'], '.3f')} "
            f"| {fmt(e['style_at_content'], '.3f')} | {fmt(e['r'], '.3f')}{bound} "
            f"| {e['equivalent_steps'] if e['equivalent_steps'] is not None else '> steps'} "
            f"| {fmt(final['content'], '.3f')} / {fmt(final['style'], '.3f')} "
            f"| {e['seconds']:.0f} |"
        )
    lines.append(
        f"| **mean r** | | | | **{fmt(report['r_mean'], '.3f')}** | | | {report['seconds']:.0f} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=Path("demo_styles/starry-night/generator.safetensors")
    )
    parser.add_argument("--style", type=Path, help="style image (default: style.jpg beside it)")
    parser.add_argument("--photos", type=Path, required=True, help="folder of held-out photos")
    parser.add_argument("--exclude", nargs="*", help="photo names (without extension) to skip")
    parser.add_argument("--size", type=int, default=256, help="side of the central crops")
    parser.add_argument("--style-size", type=int, help="default: the recorded style_size")
    parser.add_argument(
        "--steps", type=int, default=SCORE_STEPS, help="optimization steps per photo (reference)"
    )
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument(
        "--style-ramp",
        type=float,
        default=DEFAULT_STYLE_RAMP,
        help="the optimization's final style-weight multiplier (1: plain optimization)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache-dir", type=Path, help="loss-network weights cache")
    parser.add_argument("--trajectories", action="store_true", help="keep them in the JSON")
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    parser.add_argument("--resume", action="store_true", help="keep the photos --out has")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # a line per photo
    report = score(args)
    table = markdown(report)
    print(table)
    if args.out:
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
