"""Run moto's S3 server as a standalone HTTP process for the contract tests.

Usage: ``python moto_s3_server.py`` binds 127.0.0.1 on a free port, prints the port on
the first line of stdout, and serves until terminated.

Why not the stock ``moto_server`` CLI: it serves requests on many threads, and moto checks
``If-Match`` and then stores the object as two separate steps, so two racing conditional
writes can both succeed. Real S3 (and MinIO, Ceph) make that check-and-write atomic; a
single-threaded server gives the same guarantee, so the concurrency tests exercise the
store's compare-and-swap rather than a gap in the emulator.
"""

from __future__ import annotations

import signal
import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def main() -> None:
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
