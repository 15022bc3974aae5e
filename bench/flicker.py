"""Flicker of stylized clips: per-frame, shared statistics, flow blending (issue 29).

Two measurements, each printed as a table and written to ``bench/results/``:

* **flicker** (default): clips made from the content corpus's *evaluation* photos (never
  trained on) by a pan and a zoom, stylized by each demo style in each temporal mode
  (:mod:`stylenet.temporal`). Flicker = mean absolute difference of consecutive output
  frames minus that of the input frames (0–255 levels; the motion itself moves pixels,
  so only the excess is the style's). Beside it, on a sample of frames, the generator's
  own style and content losses and the yardstick's r against a short optimization
  (``--steps``; the same runs score every mode), so stability is not bought by
  washing the style out. ``flow`` is scored on its blended output frames (the clips
  are frames in memory, no decoder: its flow is block matching only). That flicker
  rewards any blending with the previous frame, ghosts included, so beside it: the
  **warping error** (:mod:`warp_error`; Lai et al. 2018), the previous output warped by
  the clip's true motion (known from the camera move) against the current output over
  the pixels that motion keeps in the frame, the input's as a check (resampling only);
  and the distance of each output frame to the ``per_frame`` output of the same frame
  (how far the mode moved the picture from the single-frame stylization). A control
  row, ``ghost`` (no product mode): each ``per_frame`` output blended with the previous
  result unwarped, at the flow weight: the old flicker rewards it, the warping error
  must not.
* ``--fps``: a synthetic 720p clip (the pan, at 1280×720) through
  :func:`stylenet.video.stylize_clip` end to end (decode, stylize, encode H.264) in a
  child process per mode: frames per second and the child's peak RSS.

::

    .venv/bin/python bench/flicker.py                     # the table of docs/VIDEO.md
    .venv/bin/python bench/flicker.py --fps --seconds 2   # 720p speed and memory
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402
from warp_error import (  # noqa: E402
    box_flow,
    camera_boxes,
    clip_warping_error,
    ghosted,
    mean_distance,
)

from stylenet import TrainParams  # noqa: E402
from stylenet.corpus import EVALUATION_PHOTOS  # noqa: E402
from stylenet.flow_blend import DEFAULT_FLOW_WEIGHT, FlowBlender  # noqa: E402
from stylenet.inference import inference_dtype  # noqa: E402
from stylenet.model_file import load_generator  # noqa: E402
from stylenet.temporal import (  # noqa: E402
    DEFAULT_STATS_FRAMES,
    FrameSample,
    WithStatistics,
)
from stylenet.train import build_loss, style_tensor  # noqa: E402
from stylenet.video import LocalStylizer, VideoLimits, stylize_clip  # noqa: E402
from stylenet.yardstick import optimization_trajectory, yardstick  # noqa: E402

STYLES = ("scream", "starry-night")
#: ``ghost`` is a control, not a product mode: blended with the previous output unwarped.
MODES = ("per_frame", "shared", "flow", "ghost")


class Outputs(torch.nn.Module):
    """Scores given output frames: maps each scored input frame to its output (``flow``)."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__()
        self.pairs = [(_tensor(a), _tensor(b)) for a, b in pairs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for given, made in self.pairs:
            if given.shape == x.shape and torch.equal(given, x.cpu()):
                return made.to(x.device)
        raise KeyError("an input frame that was not stylized")


def _tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frame)).permute(2, 0, 1)[None].float()


def camera(photo: Image.Image, kind: str, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """A camera move over a still photo: ``pan`` left to right, or ``zoom`` in by 1.6×."""
    out = []
    for box in camera_boxes(photo.size, kind, frames, size):
        crop = photo.resize(size, Image.Resampling.BILINEAR, box=box)
        out.append(np.asarray(crop.convert("RGB"), dtype=np.uint8))
    return out


def true_flows(
    photo: Image.Image, kind: str, frames: int, size: tuple[int, int]
) -> list[torch.Tensor]:
    """The exact backward flow of each consecutive pair of :func:`camera`'s frames."""
    boxes = camera_boxes(photo.size, kind, frames, size)
    return [box_flow(a, b, size) for a, b in itertools.pairwise(boxes)]


def mean_step(frames: list[np.ndarray]) -> float:
    """Mean absolute difference of consecutive frames (0–255 levels)."""
    steps = [np.abs(b.astype(np.float32) - a).mean() for a, b in itertools.pairwise(frames)]
    return float(np.mean(steps))


def run_mode(
    stylizer: LocalStylizer, frames: list[np.ndarray], mode: str, flow_weight: float
) -> tuple[list[np.ndarray], Any]:
    """Stylize ``frames`` in temporal ``mode`` as the product does; the outputs and statistics."""
    stats = None
    if mode == "shared":  # the product's sample: FrameSample(stats_frames)
        sample_frames = FrameSample(DEFAULT_STATS_FRAMES)
        for index, frame in enumerate(frames):
            sample_frames.offer(index, frame)
        stats = stylizer.statistics(sample_frames.frames())
    out: list[np.ndarray] = []
    for lo in range(0, len(frames), 4):
        out.extend(stylizer.stylize(frames[lo : lo + 4], stats))
    if mode == "flow":
        blender = FlowBlender(flow_weight)
        out = [blender.blend(a, b) for a, b in zip(frames, out, strict=True)]
    elif mode == "ghost":  # the control: the same blend weight, no warp, no confidence
        out = ghosted(out, flow_weight)
    return out, stats


def flicker(args: argparse.Namespace) -> dict[str, Any]:
    """Stylize each clip in each mode; flicker, warping error, losses and r per row."""
    content = Path(args.photos).expanduser()
    photos = [content / name for name in sorted(EVALUATION_PHOTOS) if (content / name).exists()]
    if len(photos) < 2:
        raise SystemExit(f"need 2 evaluation photos under {content} (stylize content install)")
    size = (args.width, args.width * 9 // 16)
    clips, flows = {}, {}
    for kind, photo in (("pan", photos[0]), ("zoom", photos[1])):
        image = Image.open(photo)
        clips[f"{kind} {photo.stem}"] = camera(image, kind, args.frames, size)
        flows[f"{kind} {photo.stem}"] = true_flows(image, kind, args.frames, size)
    device = torch.device("cpu")
    rows = []
    for style in STYLES:
        model = ROOT / "demo_styles" / style / "generator.safetensors"
        generator, info = load_generator(model, device=device)
        params = TrainParams.from_dict(info.train_params)
        loss = build_loss(params, device, None)
        loss.set_style(style_tensor(model.with_name("style.jpg"), params.style_size).to(device))
        stylizer = LocalStylizer(generator, dtype=torch.float32)
        for name, frames in clips.items():
            picked = np.linspace(0, len(frames) - 1, args.sample).astype(int)
            images = [_tensor(frames[i]) for i in picked]
            runs = [optimization_trajectory(loss, im, args.steps, device=device) for im in images]
            reference, _ = run_mode(stylizer, frames, "per_frame", args.flow_weight)
            for mode in args.modes.split(","):
                started = time.perf_counter()
                out, stats = run_mode(stylizer, frames, mode, args.flow_weight)
                seconds = time.perf_counter() - started
                scored: torch.nn.Module = generator
                if stats is not None:
                    scored = WithStatistics(generator, stats)
                elif mode in ("flow", "ghost"):
                    scored = Outputs([(frames[i], out[i]) for i in picked])
                report = yardstick(scored, loss, images, args.steps, device=device, runs=runs)
                entry = {
                    "style": style,
                    "clip": name,
                    "mode": mode,
                    "input_step": round(mean_step(frames), 3),
                    "output_step": round(mean_step(out), 3),
                    "flicker": round(mean_step(out) - mean_step(frames), 3),
                    "input_warp_error": round(clip_warping_error(frames, flows[name]), 3),
                    "warp_error": round(clip_warping_error(out, flows[name]), 3),
                    "from_per_frame": round(mean_distance(out, reference), 3),
                    "style_loss": round(float(np.mean([e["style"] for e in report["images"]])), 4),
                    "content_loss": round(
                        float(np.mean([e["content"] for e in report["images"]])), 4
                    ),
                    "r": report["r_mean"],
                    "seconds": round(seconds, 2),
                }
                rows.append(entry)
                print(json.dumps(entry), flush=True)
    return {
        "rows": rows,
        "frames": args.frames,
        "size": size,
        "steps": args.steps,
        "sample": args.sample,
        "flow_weight": args.flow_weight,
    }


def fps_child(args: argparse.Namespace) -> dict[str, Any]:
    """One mode over the synthetic 720p clip, in this (child) process."""
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    model = ROOT / "demo_styles" / "scream" / "generator.safetensors"
    generator, _ = load_generator(model, device=device)
    stylizer = LocalStylizer(generator, dtype=inference_dtype(device, "auto"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.mp4"
        started = time.perf_counter()
        result = stylize_clip(
            Path(args.clip), out, stylizer, max_side=1280, temporal=args.mode,
            limits=VideoLimits(), batch_size=args.batch,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {
        "mode": args.mode,
        "device": args.device,
        "frames": result.frames,
        "size": [result.width, result.height],
        "seconds": round(seconds, 1),
        "fps": round(result.frames / seconds, 3),
        "peak_rss_mib": round(peak),
    }


def fps(args: argparse.Namespace) -> dict[str, Any]:
    """Make the 720p clip, then time each mode in a child process (its own peak RSS)."""
    import av

    content = Path(args.photos).expanduser()
    photo = Image.open(content / sorted(EVALUATION_PHOTOS)[0])
    frames = camera(photo, "pan", int(args.seconds * 30), (1280, 720))
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "pan720.mp4"
        with av.open(str(clip), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        rows = []
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--fps-child", "--clip", str(clip), "--mode", mode]
            command += ["--batch", str(args.batch), "--device", args.device]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "seconds_of_clip": args.seconds, "batch": args.batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default="~/.cache/stylize/content")
    parser.add_argument("--frames", type=int, default=24, help="frames per clip")
    parser.add_argument("--width", type=int, default=320, help="clip width (16:9)")
    parser.add_argument("--sample", type=int, default=3, help="frames scored per clip")
    parser.add_argument("--steps", type=int, default=60, help="yardstick optimization steps")
    parser.add_argument("--flow-weight", type=float, default=DEFAULT_FLOW_WEIGHT)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--fps", action="store_true", help="720p frames/s and peak RSS")
    parser.add_argument("--seconds", type=float, default=2.0, help="--fps: clip length")
    parser.add_argument("--batch", type=int, default=2, help="--fps: frames per forward")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="--fps: where the generator runs")
    parser.add_argument("--out", help="the JSON report (default: bench/results/flicker*.json)")
    parser.add_argument("--fps-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="shared", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fps_child:
        print(json.dumps(fps_child(args)))
        return
    report = fps(args) if args.fps else flicker(args)
    report["machine"] = machine()
    out = ROOT / "bench" / "results" / ("flicker-fps.json" if args.fps else "flicker.json")
    out = Path(args.out) if args.out else out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["machine"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
