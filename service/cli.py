"""The ``stylize`` command: run the stack, or use the library (train, apply, lossnet, content).

``up`` is :mod:`service.launcher`; ``serve`` and ``worker`` exec ``python -m service`` /
``python -m worker`` (the worker is a separate program, never imported: the service does
not depend on the training code); the rest is :mod:`stylenet.cli`, given a way to find
styles by id in the model store (``apply --style``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model_store import ModelStore, StyleRecord

# Nothing here imports torch or the app at start: `stylize --help` and `--version` answer
# at once; stylenet (and torch) load only for the library's commands (train, apply...).
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
  apply     stylize a photo, or photos and folders into a folder (--out), with a style
            (--style ID or NAME) or a generator file (--model)
  export    write a style's generator as an ONNX model (--style ID or --model FILE)
  lossnet   fetch or list the loss-network weights
  content   install photos to train on

options:
  -h, --help   show this help
  --version    show the version

`stylize <command> --help` tells more about a command."""


def version() -> str:
    """Return the installed package's version."""
    try:
        return metadata.version("stylize-service")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def find_style(style: str) -> bytes | Path:
    """Return the generator of a style given by id or, when no id matches, by display name.

    Ids are looked up in the model store (``STYLIZE_MODEL_STORE``), then among the bundled
    demo styles. A name matches case-insensitively (blanks collapsed), across the store
    and the bundled styles (a stored style hides a bundled one of the same id).

    Raises:
        CliError: no style of that id or name (the message lists the bundled ones),
            several styles of that name (it lists their ids), or the one named has no
            trained version.
    """
    from model_store import ModelStoreError, VersionNotFound, open_store
    from service.settings import ServiceSettings
    from stylenet.cli import CliError

    url = ServiceSettings().model_store
    try:
        store: ModelStore | None = open_store(url)
    except ModelStoreError:
        store = None  # no store here: the bundled styles only
    if store is not None:
        try:
            return store.open_weights(style)
        except ModelStoreError:
            pass  # no such id (or no store yet): the bundled styles, then the names
    bundled = _bundled_styles()
    if style in bundled:
        return DEMO_STYLES_DIR / style / "generator.safetensors"
    stored = _stored_styles(store)
    wanted = _name_key(style)
    named = {rec.id: rec.name for rec in stored if _name_key(rec.name) == wanted}
    ids = {rec.id for rec in stored}
    named.update(
        (sid, name) for sid, name in bundled.items() if sid not in ids and _name_key(name) == wanted
    )
    if not named:
        known = ", ".join(f"{sid} ({name})" for sid, name in sorted(bundled.items()))
        raise CliError(
            f"--style {style}: no such style (by id or name) in {url} "
            f"or among the bundled ones: {known}"
        )
    if len(named) > 1:
        listed = ", ".join(f"{sid} ({name})" for sid, name in sorted(named.items()))
        raise CliError(
            f"--style {style}: {len(named)} styles have that name; pass one of their ids: {listed}"
        )
    ((sid, name),) = named.items()
    if store is None or sid not in ids:
        return DEMO_STYLES_DIR / sid / "generator.safetensors"
    try:
        return store.open_weights(sid)
    except VersionNotFound:
        raise CliError(
            f"--style {style}: style {sid} ({name}) has no trained version yet"
        ) from None
    except ModelStoreError as exc:
        raise CliError(f"--style {style}: style {sid} ({name}): {exc}") from None


def _name_key(name: str) -> str:
    """Return what two matching display names share (case and runs of blanks ignored)."""
    return " ".join(name.split()).casefold()


def _bundled_styles() -> dict[str, str]:
    """Return the bundled demo styles with a generator file: id -> display name."""
    try:
        manifest = json.loads((DEMO_STYLES_DIR / "manifest.json").read_text())
        names = {entry["id"]: entry["name"] for entry in manifest["styles"]}
    except (OSError, ValueError, KeyError, TypeError):
        names = {}
    found = sorted(p.parent.name for p in DEMO_STYLES_DIR.glob("*/generator.safetensors"))
    return {sid: names.get(sid, sid) for sid in found}


def _stored_styles(store: ModelStore | None) -> list[StyleRecord]:
    """Return every style of ``store`` (none when there is no store or it cannot be read)."""
    from model_store import ModelStoreError

    if store is None:
        return []
    found: list[StyleRecord] = []
    cursor = None
    try:
        while True:
            page = store.list_styles(limit=1000, cursor=cursor)
            found += page.items
            cursor = page.next_cursor
            if cursor is None:
                return found
    except ModelStoreError:
        return found


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
        print(f"stylize {version()}")
        return 0
    from stylenet import cli as stylenet_cli  # torch: the library's commands only

    return stylenet_cli.main(args, find_style=find_style)


if __name__ == "__main__":
    raise SystemExit(main())
