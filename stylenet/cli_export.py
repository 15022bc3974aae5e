"""``stylize export``: a style's generator as an ONNX model file.

::

    stylize export --style scream --format onnx scream.onnx
    stylize export --model my-style.safetensors --format onnx --dtype float16 my-style.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_args import CliError, check_output
from .errors import ModelFileError
from .files import atomic_write_bytes
from .onnx_export import EXPORT_DTYPES, export_onnx

FORMATS = ("onnx",)


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``stylize export``; return its exit status."""
    check_output(args.out, (".onnx",), "OUT")
    if args.style is not None:
        if args.find_style is None:
            raise CliError("--style needs stylize's model store; use --model FILE")
        source = args.find_style(args.style)  # a path or the file's bytes
        style_id = args.style
    else:
        source, style_id = args.model, ""
    if isinstance(source, Path):
        try:
            source = source.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read generator file {source}: {exc}") from exc
    export = export_onnx(source, dtype=args.dtype, style_id=style_id, style_name=args.name or "")
    atomic_write_bytes(args.out, export.data)
    size = len(export.data) / 1e6
    print(f"{args.out}: ONNX opset 17, {args.dtype} weights, {size:.1f} MB, sha256 {export.sha256}")
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` command to the ``stylize`` parser's sub-commands."""
    e = sub.add_parser(
        "export",
        help="export a style's generator as an ONNX model",
        description="Write a generator (--model FILE, or a style by id or name: --style) as an "
        "ONNX model: opset 17, any height and width (≥ 16 px), input 'image' and output "
        "'stylized' as N×3×H×W float32 RGB in 0–255; the metadata names the style and the "
        "sha256 of the weights it came from. It matches the float32 torch generator within "
        "1/255. Residual generators only (the multiscale one has no ONNX form).",
    )
    model = e.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="generator file (.safetensors)")
    model.add_argument("--style", metavar="STYLE", help="a registered or bundled style")
    e.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (the only one)")
    e.add_argument(
        "--dtype",
        choices=EXPORT_DTYPES,
        default="float32",
        help="weights as float32 or float16 (half the size, computed in float32)",
    )
    e.add_argument("--name", help="the style's name for the metadata")
    e.add_argument("out", type=Path, metavar="OUT", help="the model file to write (.onnx)")
    e.set_defaults(func=cmd_export)
