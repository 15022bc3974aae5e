"""Retrain the bundled demo styles with a recipe, score old and new, and publish the winners.

``train`` trains each demo style (``demo_styles/<id>/style.jpg``) on a content folder
with the given parameters, keeping the photos named by ``--held-out`` out of training,
then scores the bundled generator and the new one with the yardstick
(:mod:`stylenet.yardstick`) on those same held-out photos, each at the style size it was
trained with. It writes ``<out>/<id>/generator.safetensors`` (float16, like the bundled
ones), ``preview.jpg`` and ``report.json``, plus ``<out>/demo_styles.json`` and a
Markdown table. ``publish`` copies a trained run into ``demo_styles/`` and updates
``demo_styles/manifest.json`` (sha256s, parameters, metrics), so the service registers it.

    python bench/demo_styles.py train --content ~/.cache/stylize/content --out runs/demo \\
        --params '{"iterations": 3000, "image_size": 256, "style_size": 384}' --device cuda
    python bench/demo_styles.py publish --run runs/demo
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from stylenet import TrainParams, load_generator, save_generator, stylize, train
from stylenet.corpus import EVALUATION_PHOTOS
from stylenet.data import central_crops, find_images, open_image
from stylenet.score import SCORE_STEPS
from stylenet.train import build_loss, style_tensor
from stylenet.yardstick import yardstick

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_styles"
PREVIEW_PHOTO = "skimage-chelsea.jpg"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def score(
    model: Path, style: Path, photos: list[Path], size: int, steps: int, device: torch.device
) -> dict[str, Any]:
    """The yardstick of one generator file on held-out photos, on its own training loss."""
    generator, info = load_generator(model, device=device)
    params = TrainParams.from_dict(info.train_params)
    loss = build_loss(params, device, None)
    loss.set_style(style_tensor(style, params.style_size).to(device))
    crops = central_crops(photos, size)
    return yardstick(
        generator,
        loss,
        [image for _, image in crops],
        steps,
        device=device,
        names=[p.name for p, _ in crops],
        style_size=params.style_size,
    )


def _content_folder(content: Path, held_out: set[str], folder: Path) -> Path:
    """A folder of links to every content photo except the held-out ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for photo in find_images(content):
        link = folder / photo.name
        if photo.name not in held_out and not link.exists():
            link.symlink_to(photo.resolve())
    return folder


def cmd_train(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    manifest = json.loads((DEMO_DIR / "manifest.json").read_text())
    held_names = set(args.held_out.split(","))
    held = [p for p in find_images(args.content) if p.name in held_names]
    if len(held) != len(held_names):
        raise SystemExit(f"held-out photos missing from {args.content}: {sorted(held_names)}")
    training = _content_folder(args.content, held_names, args.out / "content")
    overrides = json.loads(args.params)
    summary: dict[str, Any] = {"params": overrides, "held_out": sorted(held_names), "styles": {}}
    for entry in manifest["styles"]:
        if args.ids and entry["id"] not in args.ids:
            continue
        style_id, folder = entry["id"], DEMO_DIR / entry["id"]
        style = folder / entry["style_image"]
        params = TrainParams.from_dict({**entry["train_params"], "holdout": 0, **overrides})
        out = args.out / style_id
        out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        result = train(style, training, params, device=device, checkpoint_dir=out / "checkpoints")
        metrics = {**result.metrics, "wall_seconds": round(time.perf_counter() - started, 1)}
        model = out / "generator.safetensors"
        save_generator(
            model,
            result.generator,
            train_params=params.to_dict(),
            lossnet=result.lossnet,
            metrics=metrics,
            dtype="float16",
        )
        preview = stylize(open_image(args.content / PREVIEW_PHOTO), result.generator, max_side=300)
        preview.save(out / "preview.jpg", quality=90)
        report = {
            "id": style_id,
            "train_params": params.to_dict(),
            "metrics": metrics,
            "before": score(
                folder / entry["generator"], style, held, args.size, args.steps, device
            ),
            "after": score(model, style, held, args.size, args.steps, device),
        }
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        summary["styles"][style_id] = {k: report[k] for k in ("before", "after")}
        print(
            f"{style_id}: r {report['before']['r_mean']} (bundled) -> "
            f"{report['after']['r_mean']} (retrained, {metrics['wall_seconds']} s)",
            flush=True,
        )
    (args.out / "demo_styles.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    manifest_path = DEMO_DIR / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["styles"]:
        run = args.run / entry["id"]
        if not (run / "report.json").is_file():
            continue
        report = json.loads((run / "report.json").read_text())
        folder = DEMO_DIR / entry["id"]
        for name in ("generator.safetensors", "preview.jpg"):
            shutil.copyfile(run / name, folder / name)
        entry["sha256"] = _sha256((folder / "generator.safetensors").read_bytes())
        entry["preview_sha256"] = _sha256((folder / "preview.jpg").read_bytes())
        entry["train_params"] = report["train_params"]
        entry["metrics"] = {**report["metrics"], "yardstick": report["after"]}
        print(f"published {entry['id']}: r = {report['after']['r_mean']}")
    buffer = io.StringIO()
    json.dump(manifest, buffer, indent=2)
    manifest_path.write_text(buffer.getvalue() + "\n")
    return 0


def cmd_shrink(args: argparse.Namespace) -> int:
    """Copy a content folder with the shorter side at ``--side`` (to carry it to a GPU host)."""
    args.dest.mkdir(parents=True, exist_ok=True)
    photos = find_images(args.content)
    for photo in photos:
        image = open_image(photo)
        scale = args.side / min(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)))
        image.save(args.dest / f"{photo.stem}.jpg", quality=88)
    total = sum(p.stat().st_size for p in args.dest.iterdir())
    print(f"{len(photos)} photos in {args.dest} ({total / 2**20:.1f} MiB)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)
    t = sub.add_parser("train", help="retrain and score the demo styles")
    t.add_argument("--content", type=Path, required=True, help="content photos (the corpus)")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--params", default="{}", help="JSON TrainParams overrides")
    t.add_argument("--ids", nargs="*", help="only these demo styles")
    t.add_argument(
        "--held-out", default=",".join(EVALUATION_PHOTOS), help="photo names, comma-separated"
    )
    t.add_argument("--size", type=int, default=256, help="held-out crop side for the yardstick")
    t.add_argument(
        "--steps", type=int, default=SCORE_STEPS, help="score optimization steps (the reference)"
    )
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.set_defaults(func=cmd_train)
    p = sub.add_parser("publish", help="copy a trained run into demo_styles/")
    p.add_argument("--run", type=Path, required=True)
    p.set_defaults(func=cmd_publish)
    s = sub.add_parser("shrink", help="a smaller copy of a content folder")
    s.add_argument("--content", type=Path, required=True)
    s.add_argument("--dest", type=Path, required=True)
    s.add_argument("--side", type=int, default=320, help="shorter side in pixels")
    s.set_defaults(func=cmd_shrink)
    args = parser.parse_args()
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
