"""``python -m worker``: run a training worker on the ``training`` queue.

Run one worker per GPU (``STYLIZE_DEVICE=cuda:N``): a worker runs one job at a time, in
a forked work horse. Heavy modules (torch, stylenet) are imported here, before any fork,
so each job starts fast; CUDA is never initialized in this parent process, only in the
horses (a CUDA context does not survive ``fork``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError
from redis.exceptions import RedisError

log = logging.getLogger("worker")

# Imported before jobs fork, so a job does not pay for them; none of them touches CUDA.
# torch._dynamo: torch.optim imports it when the first optimizer is made (~1 CPU-s), so
# every job (and the start-up speed calibration) paid for it again in its own fork.
PRELOAD = (
    "torch",
    "torch._dynamo",
    "stylenet",
    "stylenet.train",
    "model_store",
    "worker.jobs",
    "worker.videos",
)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.split("\n")[0])
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: STYLIZE_WORKER_NAME or random)")
    parser.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not run RQ's scheduler (needed only for retries with intervals)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker until it is stopped; return the process exit status."""
    args = _parse(argv)
    from .settings import WorkerSettings

    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(f"invalid worker settings (STYLIZE_*):\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from stylenet.devices import EXIT_CONFIG, device_problem

    problem = device_problem(settings.device)
    if problem:
        print(f"stylize worker: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if not settings.content_dir.is_dir():
        log.error("STYLIZE_CONTENT_DIR %s is not a directory", settings.content_dir)
        return 2

    for module in PRELOAD:
        importlib.import_module(module)
    import torch

    from model_store import ModelStoreError, open_store

    from .process import build_worker

    try:
        store = open_store(settings.model_store)
    except (ModelStoreError, OSError) as exc:
        log.error("cannot start the worker: %s", exc)
        return 2
    # RQ's work loop quits on an error it does not expect (Redis going away at the wrong
    # moment): run it again, after Redis answers, until a stop is asked for.
    wait = 1.0
    restarted = False
    while True:
        worker = build_worker(settings, store, name=args.name)  # waits for Redis
        if restarted:  # our own registration from the loop that ended, if still there
            worker.connection.delete(worker.key)
        elif settings.calibrate:  # once, with Redis up (it publishes the speed there)
            from .speed import calibrate_in_child

            calibrate_in_child(settings.redis_url, settings.device, settings.calibration_max_age_s)
        # Guard the fork-safety promise: a CUDA context made here would break every job.
        assert not torch.cuda.is_initialized(), "CUDA was initialized before forking jobs"
        log.info(
            "worker %s on queue %r: store %s, content %s, device %s",
            worker.name,
            settings.training_queue,
            settings.model_store,
            settings.content_dir,
            settings.device,
        )
        started = time.monotonic()
        try:
            worker.work(
                burst=args.burst,
                logging_level=settings.log_level,
                with_scheduler=not args.no_scheduler,
            )
        except RedisError as exc:  # its teardown could not reach Redis
            log.warning("worker teardown: Redis unavailable: %s", exc)
        if args.burst or worker._stop_requested:
            return 0
        wait = 1.0 if time.monotonic() - started > 60 else min(wait * 2, 30.0)
        log.error("the worker loop ended unexpectedly; starting it again in %.0f s", wait)
        if worker.scheduler is not None:
            worker.stop_scheduler()
        restarted = True
        time.sleep(wait)


if __name__ == "__main__":
    sys.exit(main())
