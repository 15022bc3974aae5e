"""The ``stylize`` command: run the stack, or use the library (train, apply, lossnet, content).

``up`` is :mod:`service.launcher`; ``serve`` and ``worker`` exec ``python -m service`` /
``python -m worker`` (the worker is a separate program, never imported: the service does
not depend on the training code); the rest is :mod:`stylenet.cli`, given a way to find
styles by id in the model store (``apply --style``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from stylenet import cli as stylenet_cli

_RUNNERS = {"serve": "service", "worker": "worker"}
DEMO_STYLES_DIR = Path(__file__).resolve().parent.parent / "demo_styles"

USAGE = """\
usage: stylize <command> [options]

Photos into paintings: run the service, train styles and apply them.

commands:
  up        run the API, a training worker and Redis here (http://127.0.0.1:8000)
  serve     run the HTTP API alone
  worker    run one training worker alone
  train     train a style from a painting and a folder of photos
  apply     stylize a photo with a style (--style ID) or a generator file (--model)
  lossnet   fetch or list the loss-network weights
  content   install photos to train on

options:
  -h, --help   show this help
  --version    show the version

`stylize <command> --help` tells more about a command."""


def find_style(style_id: str) -> bytes | Path:
    """Return the generator of a registered style (the model store) or a bundled one.

    Raises:
        CliError: no style with that id (the message lists the ones there are).
    """
    from model_store import ModelStoreError, open_store
    from service.settings import ServiceSettings

    url = ServiceSettings().model_store
    try:
        return open_store(url).open_weights(style_id)
    except ModelStoreError:
        pass  # not there (or no store yet): the bundled styles
    bundled = DEMO_STYLES_DIR / style_id / "generator.safetensors"
    if bundled.is_file():
        return bundled
    names = sorted(p.parent.name for p in DEMO_STYLES_DIR.glob("*/generator.safetensors"))
    raise stylenet_cli.CliError(
        f"--style {style_id}: no such style in {url} or among the bundled ones ({', '.join(names)})"
    )


def _up(argv: Sequence[str]) -> int:
    from service.launcher import up

    parser = argparse.ArgumentParser(
        prog="stylize up",
        description="Run the API, one training worker and Redis on this machine; Ctrl-C stops all.",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="models, photos, Redis (default: data)"
    )
    host = os.environ.get("STYLIZE_HOST", "127.0.0.1")
    port = int(os.environ.get("STYLIZE_PORT", "8000"))
    parser.add_argument("--host", default=host, help=f"address of the API (default: {host})")
    parser.add_argument("--port", type=int, default=port, help=f"port of the API (default: {port})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return up(args.data_dir, args.host, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``stylize <command>``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command == "up":
        return _up(args[1:])
    if command in _RUNNERS:
        module = _RUNNERS[command]
        os.execv(sys.executable, [sys.executable, "-m", module, *args[1:]])
    if command in ("", "-h", "--help"):
        print(USAGE, file=sys.stdout if command else sys.stderr)
        return 0 if command else 2
    if command == "--version":
        print(f"stylize {stylenet_cli.version()}")
        return 0
    return stylenet_cli.main(args, find_style=find_style)


if __name__ == "__main__":
    raise SystemExit(main())
