"""Recipe ablation: one change at a time against a baseline, scored by the yardstick.

Trains a generator per variant on the same content photos (a corpus folder; subsets of
it for the corpus-size variants), style, seed and iteration budget, then scores each on
held-out photos that no variant trains on with the optimization-relative yardstick
(:mod:`stylenet.yardstick`): r = the style loss that Adam on the pixels reaches at the
generator's content loss, divided by the generator's style loss (1 = as good as
optimization). Every generator is measured with the same reference loss (the default
``ulyanov`` preset's layers and weights) at the style size it was trained with, so a
variant that changes the training loss is judged on the common yardstick, not its own.

Trained generators are kept in ``--work`` (a rerun skips them, so an interrupted run
resumes), and the table is printed and written as JSON and Markdown.

    python bench/recipe.py --style demo_styles/starry-night/style.jpg \
        --content data/content --variants baseline,corpus4,corpus50,style_x2 --size 128
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from stylenet import (
    TrainParams,
    load_generator,
    save_generator,
    stylize_tensor,
    tensor_to_image,
    train,
)
from stylenet.corpus import EVALUATION_PHOTOS, default_corpus_dir
from stylenet.data import central_crops, find_images
from stylenet.train import build_loss, style_tensor
from stylenet.yardstick import (
    DEFAULT_STYLE_RAMP,
    generator_losses,
    optimization_relative_score,
    optimization_trajectory,
)

log = logging.getLogger("recipe")

# One change at a time against the baseline. Keys are TrainParams fields, plus
# "corpus" (number of training photos) and "style_scale" (style_size / image_size).
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "corpus4": {"corpus": 4},
    "corpus50": {"corpus": 50},
    "style_x0.5": {"style_weight": 0.75e-4},
    "style_x2": {"style_weight": 3e-4},
    "style_x4": {"style_weight": 6e-4},
    "style_scale1": {"style_scale": 1.0},
    "style_scale2": {"style_scale": 2.0},
    "relu5_1": {
        "style_layers": {
            "relu1_1": 1.0,
            "relu2_1": 1.0,
            "relu3_1": 1.0,
            "relu4_1": 1.0,
            "relu5_1": 1.0,
        }
    },
    "content_relu3_1": {"content_layers": {"relu3_1": 1.0}},
    "tv0": {"tv_weight": 0.0},
    "tv1e-5": {"tv_weight": 1e-5},
    "lr3e-3": {"lr": 3e-3},
    "lr1e-2": {"lr": 1e-2},
    "lr_constant": {"lr_schedule": "constant"},
    "batch8": {"batch_size": 8},
    "batch1": {"batch_size": 1},
}
_PARAM_FIELDS = {f.name for f in fields(TrainParams)}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_corpus(corpus: Path, held_out: list[str]) -> tuple[list[Path], list[Path]]:
    """Split a folder into (train, held-out); held-out photos are named explicitly."""
    photos = find_images(corpus)
    held = [p for p in photos if p.name in held_out]
    missing = set(held_out) - {p.name for p in held}
    if missing:
        raise SystemExit(f"held-out photos not in {corpus}: {sorted(missing)}")
    held_digests = {_digest(p) for p in held}
    # By content too: a copy of a held-out photo under another name must not train.
    return [p for p in photos if p not in held and _digest(p) not in held_digests], held


def subset(photos: list[Path], count: int, folder: Path) -> Path:
    """A folder of symlinks to ``count`` photos spread evenly over ``photos``."""
    folder.mkdir(parents=True, exist_ok=True)
    step = max(1, len(photos) // count)
    for path in photos[::step][:count]:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return folder


def variant_params(base: TrainParams, change: dict[str, Any]) -> TrainParams:
    """The baseline with one change applied."""
    change = dict(change)
    change.pop("corpus", None)
    scale = change.pop("style_scale", None)
    if scale is not None:
        change["style_size"] = round(base.image_size * scale)
    unknown = set(change) - _PARAM_FIELDS
    if unknown:
        raise SystemExit(f"unknown TrainParams fields in variant: {sorted(unknown)}")
    return replace(base, **change)


def score_variant(
    generator: torch.nn.Module,
    loss: Any,
    held: list[torch.Tensor],
    trajectories: list[list[tuple[float, float]]],
    device: torch.device,
) -> dict[str, Any]:
    """Mean losses and r of one generator over the held-out photos (trajectories shared)."""
    images = []
    for image, trajectory in zip(held, trajectories, strict=True):
        terms = generator_losses(generator, loss, image, device)
        score = optimization_relative_score(trajectory, terms["content"], terms["style"])
        images.append({"content": terms["content"], "style": terms["style"], **score})
    scores = [i["r"] for i in images if i["r"] is not None]
    return {
        "content": sum(i["content"] for i in images) / len(images),
        "style": sum(i["style"] for i in images) / len(images),
        "r_mean": sum(scores) / len(scores) if scores else float("nan"),
        "r_min": min(scores) if scores else float("nan"),
        "extrapolated": sum(bool(i["extrapolated"]) for i in images),
        "images": images,
    }


def _trajectories(
    args: argparse.Namespace, cache: Path, loss: Any, held: list[torch.Tensor]
) -> list[list[tuple[float, float]]]:
    """The optimization trajectories of the held-out photos, kept on disk across runs."""
    key = {
        "held_out": args.held_out,
        "size": args.size,
        "steps": args.yardstick_steps,
        "style_ramp": args.style_ramp,
    }
    if cache.is_file() and (saved := json.loads(cache.read_text()))["key"] == key:
        return [[tuple(point) for point in t] for t in saved["trajectories"]]
    device = next(loss.vgg.parameters()).device
    found = [
        optimization_trajectory(
            loss, image, args.yardstick_steps, device=device, style_ramp=args.style_ramp
        ).trajectory
        for image in held
    ]
    cache.write_text(json.dumps({"key": key, "trajectories": found}))
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    train_photos, held_paths = split_corpus(args.content, args.held_out)
    training_folder = subset(train_photos, len(train_photos), work / "content-all")
    held = [image for _, image in central_crops(held_paths, args.size)]
    base = TrainParams(
        image_size=args.size,
        style_size=round(args.size * args.style_scale),
        iterations=args.iterations,
        batch_size=args.batch_size,
        seed=args.seed,
        holdout=0,
        checkpoint_every=50,
        progress_every=max(1, args.iterations // 4),
        **({"yardstick_steps": 0} if "yardstick_steps" in _PARAM_FIELDS else {}),
    )
    style_name = args.style.stem if args.style.stem != "style" else args.style.parent.name
    results: dict[str, Any] = {
        "style": str(args.style),
        "baseline_params": base.to_dict(),
        "content_photos": len(train_photos),
        "held_out": [p.name for p in held_paths],
        "yardstick_steps": args.yardstick_steps,
        "style_ramp": args.style_ramp,
        "device": args.device,
        "variants": {},
    }
    # Variants scored by an earlier run of the same setup stay in the table.
    if args.out.is_file():
        earlier = json.loads(args.out.read_text())
        same = ("baseline_params", "held_out", "yardstick_steps", "style_ramp", "style")
        if all(earlier.get(k) == results[k] for k in same):
            results["variants"] = earlier["variants"]
    trajectories: dict[int, list[Any]] = {}
    outputs: dict[str, list[torch.Tensor]] = {}
    losses: dict[int, Any] = {}  # the reference loss at each style size (loads the VGG once)
    for name in args.variants:
        change = VARIANTS[name]
        params = variant_params(base, change)
        folder = training_folder
        if "corpus" in change:
            folder = subset(train_photos, change["corpus"], work / f"content-{change['corpus']}")
        out = work / f"{style_name}-{name}.safetensors"
        if not out.exists():
            started = time.perf_counter()
            result = train(
                args.style,
                folder,
                params,
                device=device,
                checkpoint_dir=work / f"ckpt-{style_name}-{name}",
                on_progress=lambda p, name=name: log.info(
                    "%s %d/%d %s", name, p.iteration, p.total, p.losses
                ),
            )
            metrics = {**result.metrics, "wall_seconds": round(time.perf_counter() - started, 1)}
            save_generator(out, result.generator, train_params=params.to_dict(), metrics=metrics)
        generator, info = load_generator(out, device=device)
        # The common yardstick: the default loss, at the style size this variant trained with.
        if params.style_size not in losses:
            losses[params.style_size] = build_loss(
                replace(base, style_size=params.style_size), device, None
            )
            losses[params.style_size].set_style(
                style_tensor(args.style, params.style_size).to(device)
            )
        loss = losses[params.style_size]
        if params.style_size not in trajectories:
            trajectories[params.style_size] = _trajectories(
                args, work / f"trajectories-{style_name}-{params.style_size}.json", loss, held
            )
        score = score_variant(generator, loss, held, trajectories[params.style_size], device)
        results["variants"][name] = {
            "change": change,
            "content_photos": info.metrics.get("content_images"),
            "train_seconds": info.metrics.get("train_seconds"),
            **score,
        }
        print(name, json.dumps({k: v for k, v in score.items() if k != "images"}), flush=True)
        outputs[name] = [stylize_tensor(image, generator).cpu() for image in held]
    if args.grid:
        rows = [[tensor_to_image(image) for image in held]]
        rows += [[tensor_to_image(out) for out in outputs[name]] for name in outputs]
        labels = ["held-out photo", *outputs]
        _grid(rows, labels).save(args.grid, quality=88)
    return results


def _grid(rows: list[list[Image.Image]], labels: list[str]) -> Image.Image:
    """One labelled row per variant, one column per held-out photo."""
    side, label_width = rows[0][0].width, 110
    sheet = Image.new("RGB", (label_width + side * len(rows[0]), side * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (row, label) in enumerate(zip(rows, labels, strict=True)):
        draw.text((4, r * side + side // 2 - 6), label, fill="black")
        for c, tile in enumerate(row):
            sheet.paste(tile, (label_width + c * side, r * side))
    return sheet


def markdown(results: dict[str, Any]) -> str:
    """Render the results as a Markdown table (r: higher is better, 1 = optimization)."""
    lines = [
        "| variant | change | photos | content | style | r (mean) | r (min) | r a bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["variants"].items():
        change = ", ".join(f"{k}={v}" for k, v in row["change"].items()) or "–"
        lines.append(
            f"| {name} | {change} | {row['content_photos']} | {row['content']:.3f} | "
            f"{row['style']:.3f} | {row['r_mean']:.3f} | {row['r_min']:.3f} | "
            f"{row['extrapolated']} of {len(row['images'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--content", type=Path, default=default_corpus_dir(), help="default: the installed corpus"
    )
    parser.add_argument("--style", type=Path, default=Path("demo_styles/starry-night/style.jpg"))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--style-scale", type=float, default=1.5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", default=",".join(EVALUATION_PHOTOS), help="names, a,b,c")
    parser.add_argument("--yardstick-steps", type=int, default=200)
    parser.add_argument("--grid", type=Path, help="also write a JPEG of every variant's outputs")
    parser.add_argument("--style-ramp", type=float, default=DEFAULT_STYLE_RAMP)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--work", type=Path, default=Path("bench/results/recipe/work"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/recipe/recipe.json"))
    args = parser.parse_args()
    args.held_out = [h.strip() for h in args.held_out.split(",") if h.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    table = markdown(results)
    args.out.with_suffix(".md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
