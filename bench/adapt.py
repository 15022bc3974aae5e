"""Time to a good new style: the score against wall-clock seconds and steps, per start.

For each painting (by default the paintings corpus's ``eval`` paintings: in no base and
no demo) and each start (``scratch``; ``base``: a base generator file, ``--base``, or a joint base's
checkpoint while it trains; ``base-norms``: the same base, its first ``--norm-first``
steps training only the instance norms' γ/β;
``from``: any generator file, ``--from``, e.g. the nearest registered style), it trains
with :func:`stylenet.train` and scores the generator at the fixed reference
(:mod:`stylenet.score`: 200 optimization steps, 256 px, the corpus's evaluation photos)
every ``--every`` steps. The optimization trajectories are computed once per painting
and shared by every start and checkpoint, and the time spent scoring is taken out of
the training clock, so ``seconds`` is what a user waits for a style of that quality.

    python bench/adapt.py --content ~/.cache/stylize/content --steps 300 --every 50 \\
        --image-size 128 --width 0.5 --base stylenet/bases/residual-w0.5.safetensors \\
        --out bench/results/adapt-cpu-128.json

Prints a Markdown table (painting, start, steps, seconds, r) and, per painting, the
seconds each start needs to reach the best score that scratch reaches.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from stylenet import TrainParams, train
from stylenet.conditional import (
    CHECKPOINT_NAME,
    base_state_from_checkpoint,
    load_norm_table,
    rank_norms,
    table_from_checkpoint,
    with_norms,
)
from stylenet.data import ContentImages, CropSequence, central_crops, find_images, split_content
from stylenet.devices import pick_device
from stylenet.generators import build_generator
from stylenet.lossnet import default_cache_dir
from stylenet.model_file import load_generator
from stylenet.score import SCORE_SIZE, SCORE_STEPS, TrajectoryCache, reference_runs
from stylenet.train import Progress, build_loss, style_tensor
from stylenet.yardstick import yardstick


def _eval_paintings() -> list[Path]:
    """The paintings corpus's ``eval`` paintings as installed (in no base, no demo)."""
    from stylenet.paintings import default_paintings_dir

    return sorted((default_paintings_dir() / "eval").glob("*.jpg"))


def _start_state(path: Path | None) -> dict[str, torch.Tensor] | None:
    if path is None:
        return None
    if path.name == CHECKPOINT_NAME:  # a joint base still training: what it holds so far
        return base_state_from_checkpoint(path)
    generator, _ = load_generator(path)
    return {k: v.detach().clone() for k, v in generator.state_dict().items()}


class _Nearest:
    """The joint base with the γ/β row that paints a new painting best at step 0.

    :func:`stylenet.conditional.rank_norms`: each painting's γ/β of the base is tried on
    one batch of training crops under the new painting's loss; the lowest wins.
    """

    def __init__(self, args: argparse.Namespace, params: TrainParams, device: torch.device):
        base: Path = args.base
        if base.name == CHECKPOINT_NAME:
            self.rows = table_from_checkpoint(base)
        else:
            self.rows, _ = load_norm_table(base.with_suffix(".norms.safetensors"))
        self.params, self.device = params, device
        self.loss = build_loss(params, device, None)
        train_paths = split_content(find_images(args.content), params.holdout).train
        crops = CropSequence(
            ContentImages(train_paths, params.image_size),
            params.image_size,
            params.batch_size,
            params.seed + 1,  # not a batch the training then steps on
            1,
        )
        self.batch = crops[0]

    def start(
        self, state: dict[str, torch.Tensor], painting: Path, results: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        self.loss.set_style(style_tensor(painting, self.params.style_size).to(self.device))
        generator = build_generator(self.params.generator_config)
        generator.load_state_dict(state)
        losses = rank_norms(generator.to(self.device), self.rows, self.loss, self.batch)
        best = min(range(len(losses)), key=losses.__getitem__)
        results.setdefault("nearest", {})[painting.name] = {
            "row": best,
            "loss": round(losses[best], 4),
            "mean_row_loss": round(sum(losses) / len(losses), 4),
        }
        print(f"  {painting.stem}: base row {best} (loss {losses[best]:.4g})")
        return with_norms(state, [self.rows[best]], [1.0])


def curve(
    painting: Path,
    content: Path,
    params: TrainParams,
    start: str,
    state: dict[str, torch.Tensor] | None,
    every: int,
    device: torch.device,
    cache: TrajectoryCache,
    steps: int = SCORE_STEPS,
) -> list[dict[str, Any]]:
    """Train from ``state`` and score every ``every`` steps; return the curve's points."""
    photos = split_content(find_images(content), params.holdout).held
    crops = central_crops(photos, SCORE_SIZE)
    images = [image for _, image in crops]
    loss = build_loss(params, device, None)
    style = style_tensor(painting, params.style_size)
    loss.set_style(style.to(device))
    runs = reference_runs(loss, style, images, steps, device, params.resolved(), cache)
    points: list[dict[str, Any]] = []
    scoring = [0.0]

    def measure(generator: torch.nn.Module, step: int, elapsed: float) -> None:
        began = time.perf_counter()
        report = yardstick(generator, loss, images, steps, device=device, runs=runs)
        scoring[0] += time.perf_counter() - began
        points.append(
            {
                "step": step,
                "seconds": round(elapsed, 2),
                "r": report["r_mean"],
                "bound": "upper" if report["extrapolated"] else None,
            }
        )
        print(f"  {painting.stem} {start} step {step}: r = {report['r_mean']} ({elapsed:.0f} s)")

    def on_progress(progress: Progress) -> None:
        if progress.iteration % every == 0 or progress.iteration == progress.total:
            measure(progress.generator, progress.iteration, progress.elapsed_s - scoring[0])

    torch.manual_seed(params.seed)  # the initialization train() starts from
    first = build_generator(params.generator_config)
    if state is not None:
        first.load_state_dict(state)
    measure(first.to(device), 0, 0.0)
    scoring[0] = 0.0  # the step-0 score happens before the training clock starts
    train(
        painting,
        content,
        params,
        on_progress=on_progress,
        device=device,
        init_state=state,
        progress_interval_s=float("inf"),
    )
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", type=Path, required=True, help="content photos (corpus)")
    parser.add_argument("--paintings", type=Path, nargs="*", help="default: the eval paintings")
    parser.add_argument("--base", type=Path, help="base generator file (start 'base')")
    parser.add_argument("--from", dest="from_file", type=Path, help="generator file ('from')")
    parser.add_argument(
        "--starts",
        default="scratch,base",
        help="scratch, base, nearest (a joint base with the γ/β of the painting of its table "
        "that paints the new one best at step 0), from; a '-norms' suffix (base-norms, "
        "nearest-norms) trains only γ/β for the first --norm-first steps",
    )
    parser.add_argument(
        "--norm-first",
        type=int,
        default=100,
        help="-norms starts: steps that train only the norms' γ/β before all weights",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--style-size", type=int, default=256)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--score-steps", type=int, default=SCORE_STEPS, help="the reference's (smoke runs: less)"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON to write")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    paintings = args.paintings or _eval_paintings()
    if not paintings:
        parser.error("no paintings: pass --paintings or run `stylize paintings install`")
    starts = {"scratch": None, "base": args.base, "nearest": args.base, "from": args.from_file}
    wanted = [s for s in args.starts.split(",") if s]
    for name in wanted:
        kind = name.removesuffix("-norms")
        if kind not in starts or (kind != "scratch" and starts[kind] is None):
            parser.error(f"start {name!r} needs its file (--base / --from)")
    params = TrainParams(
        iterations=args.steps,
        image_size=args.image_size,
        style_size=args.style_size,
        width=args.width,
        batch_size=args.batch_size,
        lr=args.lr,
        progress_every=args.every,
        checkpoint_every=0,
        yardstick_steps=0,
    )
    cache = TrajectoryCache(default_cache_dir() / "yardstick")
    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "device": str(device)},
        "params": params.to_dict(),
        "score": {"steps": args.score_steps, "size": SCORE_SIZE},
        "curves": {},
    }
    nearest = _Nearest(args, params, device) if any("nearest" in n for n in wanted) else None
    for painting in paintings:
        for name in wanted:
            run_params = params
            if name.endswith("-norms"):
                run_params = TrainParams.from_dict(
                    {**params.to_dict(), "norm_first_steps": args.norm_first}
                )
            kind = name.removesuffix("-norms")
            state = _start_state(starts[kind])
            if kind == "nearest" and nearest is not None and state is not None:
                state = nearest.start(state, painting, results)
            points = curve(
                painting,
                args.content,
                run_params,
                name,
                state,
                args.every,
                device,
                cache,
                args.score_steps,
            )
            results["curves"].setdefault(painting.name, {})[name] = points
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))
    print("\n| painting | start | steps | seconds | r |\n| --- | --- | ---: | ---: | ---: |")
    for painting, by_start in results["curves"].items():
        for name, points in by_start.items():
            for p in points:
                r = "–" if p["r"] is None else f"{'≤ ' if p['bound'] else ''}{p['r']:.3f}"
                print(f"| {painting} | {name} | {p['step']} | {p['seconds']:.0f} | {r} |")
    print("\nseconds to reach scratch's best score:")
    for painting, by_start in results["curves"].items():
        target = max((p["r"] or 0) for p in by_start.get("scratch", [{"r": 0}]))
        line = []
        for name, points in by_start.items():
            hit = next((p for p in points if (p["r"] or 0) >= target), None)
            seconds = "not reached" if hit is None else f"{hit['seconds']:.0f} s"
            line.append(f"{name}: {seconds}")
        print(f"  {painting} (r {target:.3f}): " + ", ".join(line))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
