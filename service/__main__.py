"""``python -m service``: run the HTTP service with uvicorn, one or several processes.

``STYLIZE_WORKERS=N`` (default: :meth:`ServiceSettings.effective_workers`) runs N
processes on one port (uvicorn's process manager: it restarts a process that dies and
drains all of them on Ctrl-C / SIGTERM). Each process builds its own app from the
environment; the group's shared folder (:mod:`service.processes`) makes their readiness
and metrics those of one server.
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. The device
# thread's OpenMP team shares the cores with the HTTP loop and the codec threads; spinning,
# one 2-core process served 8.4 img/s at 128² under 8 clients, sleeping 34 (bench/
# bench_service.py --processes); at 512² no change (1.0 vs 0.9 img/s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.app import create_app
from service.demo_styles import register_demo_styles
from service.listeners import BALANCES, ReusePortSocket
from service.processes import METRICS_SUBDIR
from service.server import uvicorn_config, uvicorn_options
from service.settings import ServiceSettings, cpu_count, load_settings
from stylenet.devices import EXIT_CONFIG, device_problem, pick_device

log = logging.getLogger("service")


def _serve_group(settings: ServiceSettings, workers: int) -> None:
    """Run ``workers`` processes; they read their settings from the environment we set."""
    group_dir = Path(tempfile.mkdtemp(prefix="stylize-http-"))
    (group_dir / METRICS_SUBDIR).mkdir()
    if settings.demo_styles_dir is not None:
        # Once here rather than racing N times in the processes' start-up.
        from model_store import open_store

        register_demo_styles(open_store(settings.model_store), settings.demo_styles_dir)
        os.environ.pop("STYLIZE_DEMO_STYLES_DIR", None)
    os.environ.update(
        STYLIZE_WORKERS=str(workers),
        STYLIZE_PROCESS_DIR=str(group_dir),
        # prometheus_client's multiprocess mode, read when the processes import it.
        PROMETHEUS_MULTIPROC_DIR=str(group_dir / METRICS_SUBDIR),
    )
    if not settings.torch_threads:  # the cores shared out, not each process taking all
        os.environ["STYLIZE_TORCH_THREADS"] = str(max(1, cpu_count() // workers))
    log.info("%d HTTP processes on %s:%d", workers, settings.host, settings.port)
    try:
        options = uvicorn_options(settings) | {
            "http": "service.server:EnvironmentEdgeProtocol",  # imported by each process
            "factory": True,
            "workers": workers,
        }
        config = uvicorn.Config("service.app:create_app", **options)
        # A listening socket per process where the kernel balances them (service.listeners).
        sock = ReusePortSocket.bind_to(settings.host, settings.port) if BALANCES else None
        Multiprocess(config, sockets=[sock or config.bind_socket()]).run()
    finally:
        shutil.rmtree(group_dir, ignore_errors=True)


def main() -> None:
    """Serve the app on the configured host and port."""
    settings = load_settings()
    problem = device_problem(settings.device)
    if problem:
        # One line and a distinct status, not a traceback: see README "Deployment".
        print(f"stylize: {problem}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The device was checked just above (device_problem), so pick_device does not raise.
    workers = settings.effective_workers(pick_device(settings.device).type)
    if workers == 1:
        # One process: the runtime owns the device; concurrency comes from batching.
        uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()
    else:
        _serve_group(settings, workers)


if __name__ == "__main__":
    main()
