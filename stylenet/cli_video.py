"""``stylize apply`` on a clip: MP4, WebM, GIF or animated WebP in, a stylized clip out.

::

    stylize apply --style scream clip.mp4 out.mp4
    stylize apply --style scream clip.mp4 out.gif --max-side 480 --temporal flow

The output's suffix picks the container (the input's audio is copied where it fits).
Frames stream through the generator in batches (:func:`stylenet.video.stylize_clip`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cli_args import CliError, check_output, resolve_device
from .errors import InvalidParams
from .flow_blend import DEFAULT_FLOW_WEIGHT
from .inference import inference_dtype
from .model_file import load_generator
from .temporal import DEFAULT_STATS_FRAMES, DEFAULT_TEMPORAL, TEMPORAL_MODES
from .video import VIDEO_SUFFIXES, LocalStylizer, VideoLimits, sniff_video, stylize_clip


def is_clip(path: Path) -> bool:
    """Whether ``path`` is a clip by its first bytes (any GIF; a WebP only when animated)."""
    try:
        with path.open("rb") as f:
            return sniff_video(f.read(32)) is not None
    except OSError:
        return False


def apply_clip(args: argparse.Namespace, source: Path, output: Path) -> int:
    """Stylize the clip ``source`` into ``output``; return the exit status."""
    check_output(output, tuple(VIDEO_SUFFIXES), "output")
    if getattr(args, "backend", "torch") == "onnxruntime":
        raise CliError("--backend onnxruntime: clips run on torch")
    if args.tile not in ("auto", None):
        raise CliError("--tile: clips are not tiled (use --max-side)")
    device = resolve_device(args.device)
    if args.style is not None:
        if args.find_style is None:
            raise CliError("--style needs stylize's model store; use --model FILE")
        model = args.find_style(args.style)
    else:
        model = args.model
    generator, _ = load_generator(model, device=device)
    stylizer = LocalStylizer(
        generator,
        dtype=inference_dtype(device, args.cpu_dtype),
        strength=args.strength,
        preserve_color=args.preserve_color,
    )
    started = time.perf_counter()

    def progress(done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r\x1b[K{done}/{total or '?'} frames")

    try:
        result = stylize_clip(
            source,
            output,
            stylizer,
            output=VIDEO_SUFFIXES[output.suffix.lower()],
            max_side=args.max_side,
            temporal=args.temporal,
            stats_frames=args.stats_frames,
            flow_weight=args.flow_weight,
            limits=VideoLimits(max_seconds=3600, max_frames=360_000, max_total_pixels=1 << 62),
            progress=progress,
        )
    except InvalidParams as exc:
        raise CliError(str(exc)) from exc
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    seconds = time.perf_counter() - started
    print(
        f"{output}: {result.frames} frames {result.width}×{result.height} ({args.temporal}, "
        f"audio {result.audio}) in {seconds:.1f}s ({result.frames / seconds:.2f} frames/s)"
    )
    return 0


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options that only clips take to ``stylize apply``'s parser."""
    parser.add_argument(
        "--temporal",
        choices=TEMPORAL_MODES,
        default=DEFAULT_TEMPORAL,
        help="clips: per_frame (each frame its own instance-norm statistics: flickers), "
        "shared (statistics over up to --stats-frames frames of the clip) or flow (each "
        "output blended with the previous one warped by the motion; default: "
        f"{DEFAULT_TEMPORAL}; docs/VIDEO.md)",
    )
    parser.add_argument(
        "--stats-frames",
        type=int,
        default=DEFAULT_STATS_FRAMES,
        help="clips, shared: frames the statistics are taken over "
        f"(default: {DEFAULT_STATS_FRAMES})",
    )
    parser.add_argument(
        "--flow-weight",
        type=float,
        default=DEFAULT_FLOW_WEIGHT,
        help="clips, flow: how much of the warped previous output a well-matched pixel "
        f"keeps, in [0, 1) (default: {DEFAULT_FLOW_WEIGHT})",
    )
