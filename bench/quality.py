"""Reproduce the paper's ablation: instance vs batch norm, residual vs multiscale generator.

Trains four generators — {residual, multiscale} × {batch, instance} — on the same content
photos, style, loss network, seed and iteration budget, then measures on held-out photos
(never trained on): content, style and total loss; **contrast sensitivity** (mean absolute
output change when the content's contrast is scaled 0.5× and 1.5× around its mean; the
paper's argument is that instance norm makes this near zero); a Gatys-style
optimization baseline on a few held-out images (how close the feed-forward nets come to
it, and how much faster they are); and each generator's **yardstick r** per held-out
photo (``stylenet/yardstick.py``: the style loss optimization reaches at the generator's
content loss over the generator's style loss; 1 = as good as optimization). The
optimization trajectories do not depend on the generator: they are run once per photo
and every generator is scored against them. Writes JSON, a Markdown table and a
labelled grid PNG.

    python bench/quality.py                                 # CPU: 128 px, a few hundred steps
    python bench/quality.py --device cuda --size 256 --iterations 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from stylenet import TrainParams, samples, stylize_tensor, tensor_to_image, train
from stylenet.data import central_crops, find_images, open_image, split_holdout
from stylenet.train import build_loss, evaluate, style_tensor
from stylenet.yardstick import OptimizationRun, optimization_trajectory, yardstick

VARIANTS = [(a, n) for a in ("residual", "multiscale") for n in ("batch", "instance")]
CONTRASTS = (0.5, 1.5)


def contrast(image: torch.Tensor, factor: float, clamp: bool = True) -> torch.Tensor:
    """Scale contrast around the per-channel mean; clamp to 0–255 as a real photo would be."""
    mean = image.mean(dim=(2, 3), keepdim=True)
    changed = mean + factor * (image - mean)
    return changed.clamp(0, 255) if clamp else changed


def contrast_sensitivity(
    generator: torch.nn.Module, images: list[torch.Tensor], clamp: bool = True
) -> float:
    """Mean |G(contrast(x, f)) − G(x)| over images and factors, on the 0–255 scale.

    Unclamped, an instance-normalized generator is invariant by construction (up to the
    norm's epsilon); clamped, saturated pixels make the change non-linear, so some
    sensitivity remains even with instance norm.
    """
    total = 0.0
    for image in images:
        reference = stylize_tensor(image, generator)
        for factor in CONTRASTS:
            changed = stylize_tensor(contrast(image, factor, clamp), generator)
            total += (changed - reference).abs().mean().item() / (len(images) * len(CONTRASTS))
    return total


def _label(image: Image.Image, text: str) -> Image.Image:
    canvas = Image.new("RGB", (image.width, image.height + 16), "white")
    canvas.paste(image, (0, 16))
    ImageDraw.Draw(canvas).text((3, 2), text, fill="black")
    return canvas


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    """Paste rows of equally sized tiles into one image."""
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (w * max(map(len, rows)), h * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            sheet.paste(tile, (c * w, r * h))
    return sheet


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    base = TrainParams(
        image_size=args.size,
        style_size=args.style_size or args.size,
        iterations=args.iterations,
        batch_size=args.batch_size,
        holdout=args.holdout,
        seed=args.seed,
        checkpoint_every=0,
        yardstick_steps=0,  # scored below, against trajectories shared by all four
        progress_every=max(1, args.iterations // 4),
    )
    style = open_image(args.style)
    _, held_paths = split_holdout(find_images(args.content), base.holdout)
    held = [image for _, image in central_crops(held_paths, base.image_size)]
    loss = build_loss(base, device, None)
    loss.set_style(style_tensor(style, base.style_size).to(device))

    results: dict[str, Any] = {"params": base.to_dict(), "held_out": [p.name for p in held_paths]}
    # One optimization run per held-out photo serves every generator's yardstick (and
    # the baseline row when the step counts agree).
    ys_steps = args.baseline_steps if args.yardstick_steps is None else args.yardstick_steps
    runs: list[OptimizationRun] = []
    if ys_steps:
        runs = [optimization_trajectory(loss, x, ys_steps, device=device) for x in held]
    outputs: dict[str, list[torch.Tensor]] = {}
    for arch, norm in VARIANTS:
        name = f"{arch}+{'IN' if norm == 'instance' else 'BN'}"
        params = replace(base, arch=arch, norm=norm)
        started = time.perf_counter()
        result = train(style, args.content, params, device=device)
        generator = result.generator.to(device).eval()
        forward_started = time.perf_counter()
        outputs[name] = [stylize_tensor(x, generator).cpu() for x in held]
        forward_s = (time.perf_counter() - forward_started) / len(held)
        metrics = evaluate(generator, loss, held, device)
        results[name] = {
            "train_seconds": round(time.perf_counter() - started, 1),
            "holdout_loss": {k: round(v, 4) for k, v in metrics.items()},
            "contrast_sensitivity": round(contrast_sensitivity(generator, held), 3),
            "contrast_sensitivity_unclamped": round(
                contrast_sensitivity(generator, held, clamp=False), 4
            ),
            "forward_seconds_per_image": round(forward_s, 4),
        }
        if runs:
            results[name]["yardstick"] = yardstick(
                generator,
                loss,
                held,
                ys_steps,
                device=device,
                names=[p.name for p in held_paths],
                style_size=base.style_size,
                runs=runs,
            )
        print(name, json.dumps(results[name]), flush=True)

    baseline = []
    for index, image in enumerate(held[: args.baseline_images]):
        reuse = runs and ys_steps == args.baseline_steps
        run = (
            runs[index]
            if reuse
            else optimization_trajectory(loss, image, args.baseline_steps, device=device)
        )
        outputs.setdefault("optimization", []).append(run.image)
        baseline.append(
            {"image": held_paths[index].name, "loss": run.final, "seconds": run.seconds}
        )
    if baseline:
        results["optimization"] = {
            "steps": args.baseline_steps,
            "holdout_loss": {
                k: round(sum(b["loss"][k] for b in baseline) / len(baseline), 4)
                for k in baseline[0]["loss"]
            },
            "seconds_per_image": round(sum(b["seconds"] for b in baseline) / len(baseline), 2),
            "images": len(baseline),
        }
        print("optimization", json.dumps(results["optimization"]), flush=True)

    tile = base.image_size
    style_tile = _label(style.resize((tile, tile)), "style")
    header = [_label(Image.new("RGB", (tile, tile), "white"), ""), style_tile]
    rows = [header]
    for index, image in enumerate(held):
        row = [_label(tensor_to_image(image), "content")]
        for name in outputs:
            if index < len(outputs[name]):
                row.append(_label(tensor_to_image(outputs[name][index]), name))
        rows.append(row)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    grid(rows).save(args.out_dir / "quality-grid.png")
    return results


def _scores(report: dict[str, Any] | None) -> str:
    """Per-photo r (a bound marked ≤/≥) and the mean, as two table cells."""
    if not report:
        return "– | –"
    marks = {"upper": "≤", "lower": "≥"}
    cells = [
        "–" if e["r"] is None else f"{marks.get(e['bound'], '')}{e['r']:.3f}"
        for e in report["images"]
    ]
    mean = "–" if report["r_mean"] is None else f"{report['r_mean']:.3f}"
    return f"{', '.join(cells)} | {mean}"


def markdown(results: dict[str, Any]) -> str:
    """Render the results as a Markdown table."""
    lines = [
        "| generator | content | style | total | contrast Δ (clamped) | contrast Δ (unclamped) "
        "| s/image | r (per held-out photo) | r (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [f"{a}+{'IN' if n == 'instance' else 'BN'}" for a, n in VARIANTS]:
        r = results[name]
        loss = r["holdout_loss"]
        lines.append(
            f"| {name} | {loss['content']:.3f} | {loss['style']:.3f} | {loss['total']:.3f} | "
            f"{r['contrast_sensitivity']:.3f} | {r['contrast_sensitivity_unclamped']:.4f} | "
            f"{r['forward_seconds_per_image']:.4f} | {_scores(r.get('yardstick'))} |"
        )
    if "optimization" in results:
        r = results["optimization"]
        loss = r["holdout_loss"]
        lines.append(
            f"| optimization ({r['steps']} steps, {r['images']} images) | {loss['content']:.3f} | "
            f"{loss['style']:.3f} | {loss['total']:.3f} | – | – | {r['seconds_per_image']:.2f} "
            "| – | 1 (by definition) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--content", type=Path, help="content photos (default: packaged samples)")
    parser.add_argument("--style", type=Path, default=Path("demo_styles/starry-night/style.jpg"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--style-size", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--holdout", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-steps", type=int, default=200)
    parser.add_argument("--baseline-images", type=int, default=2)
    parser.add_argument(
        "--yardstick-steps",
        type=int,
        default=None,
        help="optimization steps of the yardstick r per held-out photo (default: "
        "--baseline-steps; 0 disables)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path("bench/results/quality"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.content is None:
            args.content = Path(folder)
            samples.export_photos(args.content)
        results = run(args)
    results["device"] = args.device
    (args.out_dir / "quality.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out_dir / "quality.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nwrote {args.out_dir}/quality.json, quality.md, quality-grid.png")


if __name__ == "__main__":
    main()
