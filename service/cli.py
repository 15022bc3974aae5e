"""The ``stylize`` command: run the stack, or use the library (train, apply, lossnet, content).

    stylize up        API + worker + Redis on this machine (see service.launcher)
    stylize serve     the HTTP service alone (python -m service)
    stylize worker    one training worker alone (python -m worker)
    stylize train | apply | lossnet | content ...   see ``stylize train --help`` (stylenet.cli)

``worker`` is started as a separate program, never imported: the service does not
depend on the training code.
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


def _up(argv: Sequence[str]) -> int:
    from service.launcher import up

    parser = argparse.ArgumentParser(prog="stylize up", description="run the whole stack locally")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--host", default=os.environ.get("STYLIZE_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("STYLIZE_PORT", "8000")))
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
        print(__doc__)
        return 0 if command else 2
    return stylenet_cli.main(args)


if __name__ == "__main__":
    raise SystemExit(main())
