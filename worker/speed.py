"""The worker's training speed, measured and published so the API can price a training.

The speed of a device is a :class:`stylenet.cost.DeviceSpeed` (effective GFLOP/s of
training steps, a per-step and a per-run overhead). It is stored in the Redis hash
:data:`stylenet.cost.SPEED_KEY`, one field per ``<host>:<device>``, as JSON:

* at start (``STYLIZE_CALIBRATE``, default on) ``python -m worker`` measures it in a
  forked child process — a few real steps at two small sizes, seconds on a CPU — unless
  that field holds a measurement younger than ``STYLIZE_CALIBRATION_MAX_AGE_S``. A child
  process, because the parent must never initialize CUDA (its jobs fork from it); forked
  like the jobs, not a fresh interpreter, so it does not import torch again (~2 CPU-s
  and ~1 GB of memory at every worker start). ``python -m worker.speed REDIS_URL DEVICE``
  runs the same measurement by hand;
* after every finished training, the job refines it with what the run took
  (:func:`refine`), so estimates follow the machine's real load.

The service reads the newest field (``service/estimate.py``); nothing here imports it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import torch
from redis import Redis

from stylenet import TrainParams
from stylenet.children import die_with
from stylenet.cost import SPEED_KEY, DeviceSpeed, calibrate, step_flops

from .settings import WorkerSettings

log = logging.getLogger(__name__)


def field_name(device: str) -> str:
    """Return the hash field of this host's ``device`` (e.g. ``gpu-host-1:cuda:0``)."""
    return f"{socket.gethostname()}:{device}"


def read(redis: Redis, device: str) -> DeviceSpeed | None:
    """Return the published speed of this host's ``device`` (None: none or unreadable)."""
    raw = redis.hget(SPEED_KEY, field_name(device))
    if raw is None:
        return None
    try:
        return DeviceSpeed.from_dict(json.loads(raw))
    except (ValueError, TypeError):
        return None


def publish(redis: Redis, device: str, speed: DeviceSpeed) -> None:
    """Store ``speed`` as this host's ``device`` speed."""
    redis.hset(SPEED_KEY, field_name(device), json.dumps(speed.to_dict()))


def refine(
    previous: DeviceSpeed | None, params: TrainParams, metrics: dict[str, Any], total_s: float
) -> DeviceSpeed | None:
    """Blend what a finished run measured into the device's speed.

    Args:
        previous: the speed known before the run (None: nothing to refine, kept None).
        params: the run's parameters.
        metrics: ``stylenet.train``'s metrics (``images_per_s`` of the loop).
        total_s: seconds from the job's start to its publish.
    """
    images_per_s = float(metrics.get("images_per_s") or 0)
    iterations = int(params.iterations) - int(metrics.get("resumed_from") or 0)
    if previous is None or images_per_s <= 0 or iterations <= 0:
        return previous
    step_s = params.batch_size / images_per_s
    gflop = step_flops(params) / 1e9
    # What the run spent besides its steps (the score comes after the publish).
    run_overhead = max(0.0, total_s - iterations * step_s)
    return previous.with_point(gflop, step_s, run_overhead, time.time())


def calibrate_in_child(
    redis_url: str, device: str, max_age_s: float, timeout_s: float = 600
) -> None:
    """Run the calibration in a child process unless a fresh one is published.

    Failures are logged, never raised: a worker without an estimate still trains.
    """
    try:
        known = read(Redis.from_url(redis_url), device)
    except Exception as exc:
        log.warning("could not read the published training speed: %s", exc)
        known = None
    if known is not None and time.time() - known.measured_at < max_age_s:
        log.info(
            "training speed of %s: %.1f GFLOP/s (%s, kept)",
            device,
            known.gflops_per_s,
            known.source,
        )
        return
    started = time.monotonic()
    context = multiprocessing.get_context("fork")
    received, sent = context.Pipe(duplex=False)
    child = context.Process(
        target=_measure_in_child,
        args=(redis_url, device, os.getpid(), sent),
        name="stylize-calibration",
    )
    child.start()
    sent.close()
    child.join(timeout_s)
    if child.is_alive():
        child.kill()
        child.join()
        log.warning("training speed calibration took over %d s; skipped", timeout_s)
        return
    if child.exitcode != 0 or not received.poll():
        # Its traceback went to this worker's stderr, above.
        log.warning("training speed calibration failed (exit status %s)", child.exitcode)
        return
    log.info("%s (%.1f s)", received.recv(), time.monotonic() - started)


def _measure_in_child(redis_url: str, device: str, parent_pid: int, report: Connection) -> None:
    """Measure, publish, and send the summary line to the parent (the forked child)."""
    # A worker stopped during its calibration must not leave it running (a killed
    # launcher's chaos test found one 30 s later on a loaded machine).
    stop_with_parent = die_with(parent_pid)
    if stop_with_parent is not None:
        stop_with_parent()
    report.send(_measure_and_publish(redis_url, device))


#: Seconds a job spends around its training (style image, lease, publish, final preview).
JOB_OVERHEAD_S = 2.0


def measure_run_overhead(device: torch.device, settings: WorkerSettings) -> float:
    """Seconds a run takes besides its steps: a one-step training on the real content.

    Loading and verifying the loss network, listing the photos, evaluating the held-out
    ones; the one step itself is a few milliseconds at 32 px.
    """
    from PIL import Image

    from stylenet import train

    params = TrainParams(iterations=1, image_size=32, style_size=32, yardstick_steps=0)
    seconds = []
    # Twice, the faster counts: the first run may read the loss network from a cold disk
    # cache (a job finds it cached), and a worker calibrates while the API beside it may
    # be warming up on the same cores (contention only ever adds time).
    for _ in range(2):
        started = time.monotonic()
        train(
            Image.new("RGB", (32, 32), (120, 80, 40)),
            settings.content_dir,
            params,
            device=device,
            cache_dir=settings.loss_cache_dir(),
        )
        seconds.append(time.monotonic() - started)
    return min(seconds) + JOB_OVERHEAD_S


#: Steps faster than this are timed a second time (cheap; the expensive ones take seconds).
RETIME_BELOW_S = 1.0


def measure(
    device: torch.device, shapes: tuple[tuple[int, int], ...], settings: WorkerSettings
) -> DeviceSpeed:
    """Time the steps, measure the run overhead, time the cheap steps again: fastest counts.

    Contention at a worker's start (the API warming up on the same cores) only adds time,
    and a burst that slows every step of one shape, timed within a fraction of a second,
    seldom lasts through the overhead runs as well: a CI run timed an 11 GFLOP step at
    0.13 s that takes 0.09 s and priced a 16.1 s training at 21.4 s.
    """

    def point(shape: tuple[int, int]) -> DeviceSpeed:
        return calibrate(device, shapes=(shape,), run_overhead_s=0.0)

    first = {shape: point(shape) for shape in shapes}
    overhead = measure_run_overhead(device, settings)
    points = []
    for shape, speed in first.items():
        gflop, seconds = speed.points[0]
        if seconds < RETIME_BELOW_S:
            seconds = min(seconds, point(shape).points[0][1])
        points.append((gflop, seconds))
    name = next(iter(first.values())).device
    return DeviceSpeed(name, tuple(points), overhead, time.time())


def _measure_and_publish(redis_url: str, setting: str) -> str:
    """Measure ``setting``'s device, publish it; return a line that says what was found."""
    from .device import resolve_device  # initializes CUDA: never in the worker's parent

    device = resolve_device(setting)
    settings = WorkerSettings()
    speed = measure(device, settings.shapes(), settings)
    publish(Redis.from_url(redis_url), setting, speed)
    curve = ", ".join(f"{g:.0f} GFLOP in {s:.2f} s" for g, s in speed.points)
    return f"training speed of {speed.device}: {curve}; {speed.run_overhead_s:.1f} s per run"


def _main(argv: list[str]) -> int:
    redis_url, setting = argv
    print(_measure_and_publish(redis_url, setting))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
