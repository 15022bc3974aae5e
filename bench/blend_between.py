"""Does a blend lie between its parents? Style losses as the weight moves from a to b.

Takes two generators adapted from one base (``--a``, ``--b``) and their paintings,
blends them at weights ``w`` of b (``--steps``; :func:`stylenet.blend.blend_state_dicts`,
the service's blend), stylizes the content corpus's evaluation photos (never trained on;
central 256-px crops, the score's protocol) and measures each result's style loss against
painting a and against painting b (the training loss's style term, its layers and
weights, VGG19). A blend lies between its parents when, as ``w`` goes 0 → 1, the loss
against a rises and the loss against b falls, monotonically. Prints a Markdown table,
writes ``bench/results/blend-between.json`` and a picture strip (``--strip``): painting
a, the blends of one photo, painting b. Not a test.

    OMP_NUM_THREADS=1 python bench/blend_between.py --a A.safetensors --painting-a A.jpg \\
        --b B.safetensors --painting-b B.jpg --content ~/.cache/stylize/content
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stylenet import TrainParams, load_generator, tensor_to_image  # noqa: E402
from stylenet.blend import blend_generator_bytes, blend_state_dicts  # noqa: E402
from stylenet.data import central_crops, find_images, split_content  # noqa: E402
from stylenet.generators import build_generator  # noqa: E402
from stylenet.score import SCORE_SIZE  # noqa: E402
from stylenet.train import build_loss, style_tensor  # noqa: E402


def blended(states: list[dict], config, weight: float) -> torch.nn.Module:
    """The blend ``(1 - weight)·a + weight·b`` as the service builds it."""
    model = build_generator(config)
    if weight <= 0 or weight >= 1:
        model.load_state_dict(states[1 if weight >= 1 else 0])
    else:
        model.load_state_dict(blend_state_dicts(states, [1 - weight, weight]))
    return model.eval()


@torch.no_grad()
def style_losses(model, loss, photos, targets) -> list[float]:
    """Mean style term of ``model``'s results on ``photos`` against each painting."""
    outputs = [model(photo) for photo in photos]
    means = []
    for target in targets:
        loss.style_targets = target
        total = sum(
            float(loss(out, photo).style) for out, photo in zip(outputs, photos, strict=True)
        )
        means.append(total / len(photos))
    return means


def strip(paintings, model_of, photo, weights, side: int, path: Path) -> None:
    """Write painting a, the blends of ``photo`` at ``weights``, painting b, in one row."""
    tiles = [Image.open(paintings[0]).convert("RGB")]
    with torch.no_grad():
        tiles += [tensor_to_image(model_of(w)(photo).clamp(0, 255)) for w in weights]
    tiles.append(Image.open(paintings[1]).convert("RGB"))
    labels = ["painting a", *[f"{1 - w:.2f} a + {w:.2f} b" for w in weights], "painting b"]
    sheet = Image.new("RGB", (side * len(tiles), side + 18), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (tile, label) in enumerate(zip(tiles, labels, strict=True)):
        tile = tile.copy()
        tile.thumbnail((side, side))
        sheet.paste(tile, (index * side + (side - tile.width) // 2, (side - tile.height) // 2))
        draw.text((index * side + 4, side + 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=88)


def main() -> None:
    """Run the measurement; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="generator of style a")
    parser.add_argument("--b", type=Path, required=True, help="generator of style b")
    parser.add_argument("--painting-a", type=Path, required=True)
    parser.add_argument("--painting-b", type=Path, required=True)
    parser.add_argument("--content", type=Path, default=Path.home() / ".cache/stylize/content")
    parser.add_argument("--steps", default="0,0.1,0.25,0.5,0.75,0.9,1")
    parser.add_argument("--size", type=int, default=SCORE_SIZE, help="photo crop side")
    parser.add_argument("--strip", type=Path, default=ROOT / "docs/images/blend-strip.jpg")
    parser.add_argument(
        "--strip-photo", default="", help="evaluation photo of the strip (file name; first)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    data = [args.a.read_bytes(), args.b.read_bytes()]
    # The service's check first: the two must share a base (raises StylesIncompatible).
    info = load_generator(blend_generator_bytes([("a", data[0]), ("b", data[1])], [0.5, 0.5]))[1]
    models = [load_generator(d) for d in data]
    states = [m.state_dict() for m, _ in models]
    config, params = models[0][1].config, TrainParams.from_dict(models[0][1].train_params)
    split = split_content(find_images(args.content), 4)
    if not split.verified:
        print(
            "warning: no corpus evaluation photos in --content; using held-out ones",
            file=sys.stderr,
        )
    crops = central_crops(split.held, args.size)
    photos = [image for _, image in crops]
    shown = next((i for i, (p, _) in enumerate(crops) if p.name == args.strip_photo), 0)
    loss = build_loss(params, torch.device("cpu"), None)
    targets = []
    for painting in (args.painting_a, args.painting_b):
        loss.set_style(style_tensor(painting, params.style_size))
        targets.append(loss.style_targets)
    weights = [float(w) for w in args.steps.split(",")]
    rows = []
    for weight in weights:
        against_a, against_b = style_losses(blended(states, config, weight), loss, photos, targets)
        rows.append({"w_b": weight, "style_vs_a": against_a, "style_vs_b": against_b})
        print(f"w_b={weight}: vs a {against_a:.4g}, vs b {against_b:.4g}", file=sys.stderr)
    rising = all(x["style_vs_a"] <= y["style_vs_a"] for x, y in itertools.pairwise(rows))
    falling = all(x["style_vs_b"] >= y["style_vs_b"] for x, y in itertools.pairwise(rows))
    strip(
        (args.painting_a, args.painting_b),
        lambda w: blended(states, config, w),
        photos[shown],
        [w for w in weights if w in (0, 0.25, 0.5, 0.75, 1)],
        192,
        args.strip,
    )
    print(
        f"\n{len(photos)} evaluation photos ({'verified' if split.verified else 'held out'}), "
        f"{args.size}² crops; shared start {info.metrics['blend']['ancestor'][:12]}; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print("| weight of b | style loss vs painting a | style loss vs painting b |")
    print("| --- | --- | --- |")
    for row in rows:
        print(f"| {row['w_b']:g} | {row['style_vs_a']:.4g} | {row['style_vs_b']:.4g} |")
    print(f"\nvs a rises monotonically: {rising}; vs b falls monotonically: {falling}")
    out = ROOT / "bench" / "results" / "blend-between.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "rising_a": rising,
                "falling_b": falling,
                "photos": [p.name for p in split.held],
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=2,
        )
    )
    print(f"wrote {out} and {args.strip}", file=sys.stderr)


if __name__ == "__main__":
    main()
