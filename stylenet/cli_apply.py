"""``stylize apply``: one photo to one file, or photos and folders into a folder (``--out``).

::

    stylize apply --style scream photo.jpg out.png
    stylize apply --style scream holiday/ beach.jpg --out styled/ --format webp
    stylize apply --style scream clip.mp4 styled.mp4          # a clip: stylenet/cli_video.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from . import batch, ort_backend
from .blend import blend_generator_bytes, parse_blend
from .cli_args import (
    CliError,
    check_output,
    device_arg,
    fraction_arg,
    resolve_device,
    side_arg,
    tile_arg,
)
from .cli_video import add_clip_arguments, apply_clip, is_clip
from .data import open_image
from .inference import CPU_DTYPES, inference_dtype, stylize
from .model_file import load_generator
from .onnx_export import export_onnx

#: What PIL writes, by output file extension.
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_FORMAT_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
#: Exit status of a batch in which some photos failed (the others were written).
SOME_FAILED = 3


def _converter(args: argparse.Namespace) -> Callable[[Path], Image.Image]:
    """Load the generator once; return what turns a photo into its result."""
    device = resolve_device(args.device)
    if args.style is not None:
        if args.find_style is None:
            raise CliError("--style needs stylize's model store; use --model FILE")
        model = args.find_style(args.style)  # a path or the file's bytes
    else:
        model = args.model
    generator, _ = load_generator(model, device=device)
    dtype = inference_dtype(device, args.cpu_dtype)
    runner = _ort_runner(args.backend, device, dtype, model)

    def convert(photo: Path) -> Image.Image:
        if runner is not None:
            return ort_backend.stylize_image(
                open_image(photo),
                runner,
                generator,
                max_side=args.max_side,
                strength=args.strength,
                preserve_color=args.preserve_color,
                tile=args.tile,
            )
        return stylize(
            open_image(photo),
            generator,
            max_side=args.max_side,
            strength=args.strength,
            preserve_color=args.preserve_color,
            dtype=dtype,
            tile=args.tile,
        )

    return convert


def _ort_runner(
    backend: str, device: torch.device, dtype: torch.dtype, model: bytes | Path
) -> ort_backend.OrtGenerator | None:
    """Return the ONNX Runtime session ``--backend`` asks for (``auto``: if faster), or None."""
    if backend == "torch":
        return None
    if device.type != "cpu":
        if backend == "onnxruntime":
            raise CliError(f"--backend onnxruntime runs on the CPU, not {device}")
        return None
    if not ort_backend.onnxruntime_available():
        if backend == "onnxruntime":
            raise CliError("--backend onnxruntime: onnxruntime is not installed")
        return None
    if backend == "auto":
        chosen = ort_backend.calibrate(torch_dtype=dtype, threads=torch.get_num_threads())
        print(f"stylize: backend {chosen.backend} ({chosen.reason})", file=sys.stderr)
        if chosen.backend == "torch":
            return None
    data = model if isinstance(model, bytes) else model.read_bytes()
    return ort_backend.OrtGenerator(export_onnx(data).data, threads=torch.get_num_threads())


def _apply_one(args: argparse.Namespace) -> int:
    if len(args.paths) != 2:
        raise CliError(
            "apply: give PHOTO OUTPUT for one photo, or photos and folders with --out FOLDER"
        )
    source, output = args.paths
    if source.is_dir():
        raise CliError(f"{source} is a folder: write its photos with --out FOLDER")
    if args.format is not None:
        raise CliError("--format goes with --out FOLDER; here OUTPUT's suffix decides")
    if is_clip(source):
        return apply_clip(args, source, output)
    check_output(output, OUTPUT_SUFFIXES, "output")
    convert = _converter(args)
    started = time.perf_counter()
    out = convert(source)
    out.save(output)
    print(f"{output}: {out.width}×{out.height} in {time.perf_counter() - started:.2f}s")
    return 0


def _apply_batch(args: argparse.Namespace) -> int:
    out_dir: Path = args.out
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out {out_dir}: not a folder")
    suffix = _FORMAT_SUFFIXES[args.format] if args.format else None
    items, refused = batch.plan(args.paths, out_dir, suffix=suffix)
    if not items and not refused:
        raise CliError(f"no photos (jpg, png, webp) in {[str(p) for p in args.paths]}")
    convert = _converter(args) if items else None
    progress = batch.ProgressLine(len(items), quiet=args.quiet)
    for source, reason in refused:
        progress.message(f"stylize: skipped {source}: {reason}")
    started = time.perf_counter()
    report = batch.Report()
    if convert is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        report = batch.run(items, convert, force=args.force, progress=progress)
    report.failed[:0] = refused
    print(report.summary(out_dir, time.perf_counter() - started))
    return SOME_FAILED if report.failed else 0


def _blending(find_style: Callable[[str], bytes | Path]) -> Callable[[str], bytes | Path]:
    """Wrap ``find_style`` so that ``--style a:0.7,b:0.3`` gives the blended generator.

    A spec with a comma is a blend (:mod:`stylenet.blend`; its errors say what is wrong);
    anything else is one style, by id or display name, as before.
    """

    def find(spec: str) -> bytes | Path:
        if "," not in spec:
            return find_style(spec)
        parts = parse_blend(spec)
        files = []
        for part in parts:
            found = find_style(part.style)
            files.append((part.style, found if isinstance(found, bytes) else found.read_bytes()))
        return blend_generator_bytes(files, [part.weight for part in parts])

    return find


def cmd_apply(args: argparse.Namespace) -> int:
    """Run ``stylize apply``; return its exit status."""
    if args.find_style is not None:
        args.find_style = _blending(args.find_style)
    return _apply_one(args) if args.out is None else _apply_batch(args)


def add_apply_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``apply`` command to the ``stylize`` parser's sub-commands."""
    a = sub.add_parser(
        "apply",
        help="stylize photos with a trained generator",
        description="Stylize a photo with a generator file (--model) or a style given by "
        "id or display name (--style): `apply PHOTO OUTPUT`, or several photos and folders "
        "into a folder: `apply PHOTO_OR_FOLDER... --out FOLDER`. A batch loads the "
        "generator once, names each result after its photo, keeps results that exist "
        f"(unless --force), and skips a photo that fails (exit status {SOME_FAILED}).",
    )
    model = a.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="generator file (.safetensors)")
    model.add_argument(
        "--style",
        metavar="STYLE",
        help="a registered (STYLIZE_MODEL_STORE) or bundled style (scream, starry-night): "
        "its id or, when no id matches, its display name (any case, e.g. 'The Scream'); "
        "or a blend of styles that share a base, 'a:0.7,b:0.3' (docs/BLENDING.md)",
    )
    a.add_argument(
        "paths",
        type=Path,
        nargs="+",
        metavar="PATH",
        help=f"PHOTO OUTPUT ({', '.join(OUTPUT_SUFFIXES)}); with --out: photos and folders "
        "of photos (searched recursively)",
    )
    a.add_argument(
        "--out",
        type=Path,
        metavar="FOLDER",
        help="write the results here (made if missing), each named after its photo; "
        "a folder's sub-folders are kept",
    )
    a.add_argument(
        "--format",
        choices=tuple(_FORMAT_SUFFIXES),
        help="with --out: the results' file type (default: each photo's own)",
    )
    a.add_argument("--force", action="store_true", help="with --out: replace existing results")
    a.add_argument("--quiet", action="store_true", help="with --out: no progress bar")
    a.add_argument(
        "--max-side",
        type=side_arg,
        default=1024,
        help="longer side of the result in pixels (default: 1024)",
    )
    a.add_argument(
        "--strength",
        type=fraction_arg,
        default=1.0,
        help="0: the photo, 1: full style (default: 1)",
    )
    a.add_argument("--preserve-color", action="store_true", help="keep the photo's colours")
    a.add_argument(
        "--device", type=device_arg, default="cpu", help="auto, cpu, cuda or cuda:N (default: cpu)"
    )
    a.add_argument(
        "--cpu-dtype",
        choices=CPU_DTYPES,
        default="auto",
        help="on CPU: auto = bfloat16 where the CPU has bf16 instructions (CUDA: bf16)",
    )
    a.add_argument(
        "--backend",
        choices=ort_backend.BACKENDS,
        default=os.environ.get("STYLIZE_BACKEND", "torch"),
        help="on CPU: torch, onnxruntime (the generator exported to ONNX, float32), or auto "
        "(both timed here at 256², the faster used); images tiled by --tile run on torch "
        "(default: $STYLIZE_BACKEND or torch)",
    )
    a.add_argument(
        "--tile",
        type=tile_arg,
        default="auto",
        help="exact tiled inference with tiles of this many pixels a side (bounded memory, "
        "no seams); 'none' never tiles; 'auto' (default) tiles images over 2048² px "
        "(after --max-side)",
    )
    add_clip_arguments(a)
    a.set_defaults(func=cmd_apply)
