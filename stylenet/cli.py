"""The ``stylize`` command line: train a style, apply it, manage loss-network weights.

Examples::

    stylize lossnet fetch --source keras-vgg19
    stylize content install --dest data/content
    stylize content fetch coco2017-val --dest data/content --limit 2000
    stylize paintings install --dest data/paintings
    stylize train --style scream.jpg --content photos/ --out scream.safetensors --iterations 2000
    stylize apply --model scream.safetensors photo.jpg out.png --max-side 1024
    stylize apply --style scream holiday/ beach.jpg --out styled/
    stylize export --style scream --format onnx scream.onnx
    stylize base train --styles paintings/ --content photos/ --out base.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from . import lossnet
from .base import BaseParams, BaseProgress, save_base, train_base
from .cli_apply import add_apply_parser
from .cli_args import (
    CliError,
    add_field_options,
    add_training_io,
    check_output,
    resolve_device,
)
from .cli_export import add_export_parser
from .conditional import save_norm_table
from .data import find_images
from .errors import ModelFileError, StylenetError
from .model_file import read_info, save_generator
from .params import TrainParams
from .score import score_generator
from .train import Progress, train
from .warmstart import InitChoice, Start, choose_init, find_base

_TRAIN_FIELDS = {
    "arch": str,
    "width": float,
    "norm": str,
    "scales": int,
    "preset": str,
    "lossnet": str,
    "image_size": int,
    "style_size": int,
    "iterations": int,
    "batch_size": int,
    "lr": float,
    "lr_schedule": str,
    "content_weight": float,
    "style_weight": float,
    "tv_weight": float,
    "seed": int,
    "holdout": int,
    "checkpoint_every": int,
    "progress_every": int,
    "num_workers": int,
    "yardstick_steps": int,
    "init": str,
    "norm_first_steps": int,
}
#: BaseParams fields offered by ``stylize base train`` (the loss weights keep the preset's).
_BASE_FIELDS = {
    "method": str,
    "arch": str,
    "width": float,
    "norm": str,
    "preset": str,
    "lossnet": str,
    "image_size": int,
    "style_size": int,
    "batch_size": int,
    "outer_steps": int,
    "inner_steps": int,
    "inner_lr": float,
    "meta_lr": float,
    "seed": int,
    "holdout": int,
    "checkpoint_every": int,
    "num_workers": int,
}


def _progress_bar(progress: Progress) -> None:
    width = 30
    filled = int(width * progress.iteration / progress.total)
    losses = " ".join(f"{k}={v:.3g}" for k, v in progress.losses.items())
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.iteration}/{progress.total} "
        f"{losses} {progress.images_per_s:.1f} img/s eta {progress.eta_s:.0f}s "
    )
    if progress.iteration == progress.total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _cmd_train(args: argparse.Namespace) -> int:
    fields = {k: getattr(args, k) for k in _TRAIN_FIELDS if getattr(args, k) is not None}
    params = TrainParams.from_dict(fields)
    check_output(args.out, (".safetensors",), "--out")
    device = resolve_device(args.device)
    choice = _cli_init(params, args.init_from)
    result = train(
        args.style,
        args.content,
        params,
        on_progress=None if args.quiet else _progress_bar,
        checkpoint_dir=args.checkpoint_dir,
        device=device,
        init_state=choice.state,
        init_info=choice.info,
        init_norms=choice.norms,
    )
    if args.score and params.yardstick_steps and result.metrics["holdout_images"]:
        held = [Path(args.content) / name for name in result.metrics["holdout_images"]]
        result.metrics["score"] = score_generator(
            result.generator,
            args.style,
            held,
            params,
            verified=result.metrics["holdout_verified"],
            device=device,
        )
    digest = save_generator(
        args.out,
        result.generator,
        train_params=params.to_dict(),
        lossnet=result.lossnet,
        metrics=result.metrics,
        dtype=args.dtype,
    )
    if args.json:
        report = {"out": str(args.out), "sha256": digest, "metrics": result.metrics}
        print(json.dumps(report, indent=2))
    else:
        print(train_summary(args.out, digest, result.metrics))
    return 0


def train_summary(out: Path, digest: str, metrics: dict[str, Any]) -> str:
    """Return what ``stylize train`` prints for people: a few lines (``--json``: all).

    The file written and its sha256, the training time, the held-out loss (total of
    its terms) and, when measured (``--score``), the quality score r.
    """
    device = metrics.get("device", "?")
    lines = [
        f"wrote {out}",
        f"  sha256         {digest}",
        f"  trained in     {metrics.get('train_seconds', 0):.1f} s "
        f"({metrics.get('iterations', '?')} steps on {device})",
    ]
    holdout = metrics.get("holdout_loss") or {}
    if holdout:
        total = holdout.get("total", sum(holdout.values()))
        photos = len(metrics.get("holdout_images") or [])
        lines.append(f"  held-out loss  {total:.4g} ({photos} photos)")
    score = metrics.get("score") or {}
    if isinstance(score.get("r_mean"), (int, float)):
        bound = "at most " if score.get("bound") == "upper" else ""
        lines.append(f"  quality r      {bound}{score['r_mean']:.3f} (1 = as good as optimization)")
    return "\n".join(lines)


def _cli_init(params: TrainParams, init_from: Path | None) -> InitChoice:
    """Where an offline training starts: ``--init-from FILE``, else ``--init`` (no store)."""
    config = params.generator_config
    if init_from is not None:
        try:
            data = init_from.read_bytes()
            shape = read_info(data).config
        except (OSError, ModelFileError) as exc:
            raise CliError(f"--init-from {init_from}: {exc}") from None
        start = Start(
            "style", shape, lambda: data, hashlib.sha256(data).hexdigest(), name=str(init_from)
        )
        return choose_init("file", config, named=start)
    if params.init not in ("auto", "scratch", "base"):
        raise CliError("--init: offline, use auto, scratch or base (or --init-from FILE)")
    return choose_init(params.init, config, base=find_base(config))


def _paintings(sources: Sequence[Path]) -> list[Path]:
    """Expand ``--styles``: image files as given, folders into their images (sorted)."""
    found: list[Path] = []
    for source in sources:
        if source.is_dir():
            found += find_images(source)
        elif source.is_file():
            found.append(source)
        else:
            raise CliError(f"--styles {source}: no such file or folder")
    if not found:
        raise CliError(f"--styles: no images (jpg, png, webp) in {[str(s) for s in sources]}")
    return found


def _base_progress(every: int) -> Callable[[BaseProgress], None]:
    """Return a callback printing one line every ``every`` outer steps (and the last)."""
    seconds: list[float] = []

    def report(progress: BaseProgress) -> None:
        seconds.append(progress.step_seconds)  # this run's steps only (set-up and resumes apart)
        if progress.outer_step % every and progress.outer_step != progress.total:
            return
        eta = sum(seconds) / len(seconds) * (progress.total - progress.outer_step)
        print(
            f"outer {progress.outer_step}/{progress.total} loss={progress.inner_loss:.4g} "
            f"eps={progress.meta_lr:.3g} painting={progress.painting} "
            f"{progress.step_seconds:.2f}s/step eta {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    return report


def _cmd_base(args: argparse.Namespace) -> int:
    fields = {k: getattr(args, k) for k in _BASE_FIELDS if getattr(args, k) is not None}
    params = BaseParams.from_dict(fields)
    check_output(args.out, (".safetensors",), "--out")
    paintings = _paintings(args.styles)
    device = resolve_device(args.device)
    print(f"base: {len(paintings)} paintings, {params.outer_steps} outer steps", file=sys.stderr)
    result = train_base(
        paintings,
        args.content,
        params,
        checkpoint_dir=args.checkpoint_dir,
        device=device,
        on_progress=None if args.quiet else _base_progress(args.progress_every),
    )
    digest = save_base(args.out, result, params, dtype=args.dtype)
    report = {"out": str(args.out), "sha256": digest, "params": params.to_dict()}
    if result.norms is not None:  # joint: every painting's γ/β beside the base
        table = Path(args.out).with_suffix(".norms.safetensors")
        names = [p["file"] for p in result.metrics["paintings"]]
        shas = [p["sha256"] for p in result.metrics["paintings"]]
        save_norm_table(table, result.norms, names, shas)
        report["norms"] = str(table)
    print(json.dumps({**report, "metrics": result.metrics}, indent=2))
    return 0


def _cmd_lossnet(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        path = lossnet.fetch(
            args.source,
            cache_dir=args.cache_dir,
            path=args.path,
            sha256=args.sha256,
            depth=args.depth,
            preprocessing=args.preprocessing,
        )
        print(f"{args.source}: {path} (verified)")
    else:
        print(json.dumps(lossnet.describe(args.cache_dir), indent=2))
    return 0


def _cmd_content(args: argparse.Namespace) -> int:
    # Imported here: the corpus code is only needed by this command.
    from . import corpus
    from .corpus import fetch as corpus_fetch

    dest = args.dest or corpus.default_corpus_dir()
    if args.action == "install":
        started = time.perf_counter()
        report = corpus.install(dest, manifest=args.manifest, package_cache=args.package_cache)
        for line in report.failures:
            print(f"warning: {line}", file=sys.stderr)
        print(
            f"{report.installed} of {report.total} corpus photos in {dest} "
            f"({report.written} written, {time.perf_counter() - started:.1f}s)"
        )
        return report.exit_status
    if not args.dataset:
        raise corpus.CorpusError(f"content fetch needs a data set: {list(corpus_fetch.DATASETS)}")
    count = corpus_fetch.fetch_dataset(
        args.dataset,
        dest,
        url=args.url,
        limit=args.limit,
        size=args.size,
        sha256=args.sha256,
        md5=args.md5,
        cache=args.package_cache,
    )
    print(f"{args.dataset}: {count} photos in {dest}")
    return 0


def _cmd_paintings(args: argparse.Namespace) -> int:
    # Imported here: the paintings code is only needed by this command.
    from . import paintings

    dest = args.dest or paintings.default_paintings_dir()
    started = time.perf_counter()
    report = paintings.install(dest, manifest=args.manifest, package_cache=args.package_cache)
    for line in report.failures:
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"{report.installed} of {report.total} paintings in {dest} "
        f"({report.written} written, {time.perf_counter() - started:.1f}s)"
    )
    return report.exit_status


def build_parser() -> argparse.ArgumentParser:
    """Return the ``stylize`` argument parser."""
    parser = argparse.ArgumentParser(prog="stylize", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    parser.add_argument("--version", action="version", version=f"stylize {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a generator for one style image",
        description="Train a generator for one style image on a folder of photos. "
        "Training options left out take the default shown (or the loss preset's).",
    )
    t.add_argument("--style", type=Path, required=True, help="the style image (the painting)")
    add_training_io(t, "generator file to write (.safetensors)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--json",
        action="store_true",
        help="print the whole report (every metric) as JSON instead of a short summary",
    )
    t.add_argument(
        "--init-from",
        type=Path,
        help="start from this generator file (another style's, or a base) instead of --init",
    )
    t.add_argument(
        "--score",
        action="store_true",
        help="after saving, measure the quality score at the fixed reference (200 "
        "optimization steps per held-out photo at 256 px: minutes on a CPU)",
    )
    add_field_options(
        t.add_argument_group("training options (TrainParams)"), TrainParams, _TRAIN_FIELDS
    )
    t.set_defaults(func=_cmd_train)

    b = sub.add_parser("base", help="meta-train a base generator that adapts to new paintings")
    base_sub = b.add_subparsers(dest="action", required=True)
    bt = base_sub.add_parser(
        "train",
        help="train a base generator across many paintings (Reptile or joint)",
        description="Train one generator across many paintings so that a few hundred "
        "ordinary training steps from its weights adapt it to a new painting: --method "
        "reptile (first-order meta-learning) or joint (conditional instance norm: shared "
        "convolutions, γ/β per painting, their table written beside the base as "
        "OUT.norms.safetensors). Writes a generator file whose metrics say kind 'base'. "
        "Options left out take the default shown (or the loss preset's).",
    )
    bt.add_argument(
        "--styles",
        type=Path,
        nargs="+",
        required=True,
        help="the paintings: image files and/or folders of them",
    )
    add_training_io(bt, "base file to write (.safetensors)")
    bt.add_argument(
        "--progress-every",
        type=int,
        default=10,
        metavar="N",
        help="print a progress line every N outer steps (default: 10)",
    )
    bt.add_argument("--quiet", action="store_true", help="no progress lines")
    add_field_options(
        bt.add_argument_group("meta-training options (BaseParams)"), BaseParams, _BASE_FIELDS
    )
    bt.set_defaults(func=_cmd_base)

    add_apply_parser(sub)
    add_export_parser(sub)

    n = sub.add_parser("lossnet", help="fetch and check loss-network weights")
    n.add_argument("action", choices=("fetch", "list"))
    n.add_argument("--source", default="keras-vgg19", help=f"one of {[*lossnet.SOURCES, 'file']}")
    n.add_argument("--path", type=Path, help="local copy of the source file")
    n.add_argument("--sha256", help="expected sha256 of --path (source 'file')")
    n.add_argument("--depth", type=int, default=19, choices=(16, 19))
    n.add_argument("--preprocessing", default="torchvision", choices=("caffe", "torchvision"))
    n.add_argument("--cache-dir", type=Path, default=None)
    n.set_defaults(func=_cmd_lossnet)

    c = sub.add_parser("content", help="install content photos to train on")
    c.add_argument("action", choices=("install", "fetch"))
    c.add_argument("dataset", nargs="?", help="fetch: the data set (coco2017-val)")
    c.add_argument("--dest", type=Path, help="folder for the photos (default: the cache's)")
    c.add_argument("--manifest", type=Path, help="install: another corpus manifest")
    c.add_argument("--package-cache", type=Path, help="where downloads are kept")
    c.add_argument("--url", help="fetch: download from here instead")
    c.add_argument("--limit", type=int, help="fetch: at most this many photos")
    c.add_argument("--size", type=int, default=512, help="fetch: shorter side in pixels")
    c.add_argument("--sha256", help="fetch: expected sha256 of the archive")
    c.add_argument("--md5", help="fetch: expected md5 of the archive")
    c.set_defaults(func=_cmd_content)

    p = sub.add_parser("paintings", help="install paintings to train and evaluate styles on")
    p.add_argument("action", choices=("install",))
    p.add_argument("--dest", type=Path, help="folder for the paintings (default: the cache's)")
    p.add_argument("--manifest", type=Path, help="another paintings manifest")
    p.add_argument("--package-cache", type=Path, help="where downloads are kept")
    p.set_defaults(func=_cmd_paintings)
    return parser


def version() -> str:
    """Return the installed package's version."""
    try:
        return metadata.version("stylize-service")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def main(
    argv: Sequence[str] | None = None,
    *,
    find_style: Callable[[str], bytes | Path] | None = None,
) -> int:
    """Run the ``stylize`` command; return its exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        find_style: resolves ``apply --style`` (an id, or a display name) to a generator
            file or its bytes (the service's CLI passes one that looks in the model
            store); raises :class:`CliError` for an unknown or ambiguous style.
    """
    args = build_parser().parse_args(argv)
    args.find_style = find_style
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s"
    )
    try:
        return int(args.func(args))
    except (StylenetError, CliError) as exc:
        print(f"stylize: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstylize: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
