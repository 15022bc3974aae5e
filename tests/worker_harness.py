"""Harness of the training-worker tests: real Redis, real ``python -m worker`` processes.

Each test gets its own queue name and model store, so tests sharing the session's
redis-server never see each other's jobs. Jobs are enqueued exactly as the service does
(see "The training job" in docs/ARCHITECTURE.md): by dotted path, JSON serializer,
job id ``train-<style_id>``, explicit timeouts and ``Retry(max=2)``.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import forkserver
import pytest
from PIL import Image
from redis import Redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from model_store import ModelStore, StyleRecord, open_store

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

#: Tiny but real trainings: 64 px crops, a quarter-width generator, the real VGG19.
TINY = {
    "image_size": 64,
    "style_size": 64,
    "batch_size": 1,
    "width": 0.25,
    "holdout": 1,
    "progress_every": 1,
    "checkpoint_every": 2,
}


#: The default hang guard of the waits below: generous, since ``make test`` runs several
#: test processes on the cores at once; a quiet machine needs a fraction of it.
HANG_S = 240.0


def wait_for(check: Callable[[], T], timeout: float, what: str, poll: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class WorkerProcess:
    """A ``python -m worker`` subprocess (its own session, so its group can be killed)."""

    process: forkserver.ForkedProcess | subprocess.Popen[bytes]
    log_path: Path
    name: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its process group (its scheduler; not work horses)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class WorkerEnv:
    """Everything one test needs: its queue, store, Redis and worker factory."""

    redis: Redis
    queue: Queue
    store: ModelStore
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    horse_pids: set[int] = field(default_factory=set)

    def start_worker(self, *args: str, **env: str) -> WorkerProcess:
        """Start ``python -m worker`` with this test's settings (plus ``env`` overrides)."""
        log_path = self.tmp / f"worker-{len(self.workers)}.log"
        name = f"test-{uuid.uuid4().hex[:8]}"
        process = forkserver.start_module(
            "worker", ["--name", name, *args], {**self.env, **env}, REPO, log_path
        )
        worker = WorkerProcess(process, log_path, name)
        self.workers.append(worker)
        return worker

    def create_style(self, image: Image.Image | bytes, params: dict[str, Any]) -> str:
        if isinstance(image, Image.Image):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            image = buffer.getvalue()
        return self.store.create(image, name="test style", params=params).id

    def enqueue(
        self,
        style_id: str,
        params: dict[str, Any],
        retries: int = 2,
        intervals: list[int] | None = None,
    ) -> Job:
        """Enqueue a training as the service does (``service/training.py`` adds intervals)."""
        return self.queue.enqueue(
            "worker.jobs.train_style",
            style_id,
            params,
            job_id=f"train-{style_id}",
            job_timeout=6 * 3600,
            result_ttl=86400,
            failure_ttl=7 * 86400,
            retry=Retry(max=retries, interval=intervals or 0) if retries else None,
        )

    def job(self, style_id: str) -> Job:
        return Job.fetch(f"train-{style_id}", connection=self.redis, serializer=JSONSerializer)

    def scratch_files(self, style_id: str) -> list[str]:
        """Names in the style's scratch directory (without creating it, unlike the store)."""
        try:
            return sorted(p.name for p in (self.tmp / "models" / "scratch" / style_id).iterdir())
        except FileNotFoundError:
            return []

    def record(self, style_id: str) -> StyleRecord:
        return self.store.get(style_id)

    def wait_status(self, style_id: str, *statuses: str, timeout: float = HANG_S) -> StyleRecord:
        def done() -> StyleRecord | None:
            rec = self.record(style_id)
            return rec if rec.status in statuses else None

        try:
            return wait_for(done, timeout, f"style {style_id} to become {statuses}")
        except pytest.fail.Exception:
            print(self.logs())
            raise

    def wait_horse(self, style_id: str, min_iteration: int = 0, timeout: float = HANG_S) -> int:
        """Wait until a horse trains ``style_id`` past ``min_iteration``; return its pid."""

        def running() -> int | None:
            job = self.job(style_id)
            meta = job.get_meta(refresh=True)
            pid = meta.get("pid")
            iteration = (meta.get("progress") or {}).get("iteration", 0)
            if pid and iteration >= min_iteration and job.get_status() == "started":
                self.horse_pids.add(pid)
                return pid
            return None

        try:
            return wait_for(running, timeout, f"{style_id} past iteration {min_iteration}")
        except pytest.fail.Exception:
            print(self.logs())
            raise

    def wait_resumed(self, worker: WorkerProcess, timeout: float = HANG_S) -> int:
        """Wait until ``worker`` resumes a training from a checkpoint; return its iteration."""

        def resumed() -> int | None:
            found = re.search(r"resuming from checkpoint at iteration (\d+)", worker.log())
            return int(found.group(1)) if found else None

        try:
            return wait_for(resumed, timeout, "a resumed training")
        except pytest.fail.Exception:
            print(self.logs())
            raise

    def settings_kwargs(self) -> dict[str, str]:
        """This test's STYLIZE_* settings as ``WorkerSettings`` keyword arguments."""
        return {
            k.removeprefix("STYLIZE_").lower(): v
            for k, v in self.env.items()
            if k.startswith("STYLIZE_")
        }

    def rq_worker_state(self, worker: WorkerProcess) -> str | None:
        """The state RQ records for ``worker`` (``idle``, ``busy``...), None if unregistered."""
        state = self.redis.hget(f"rq:worker:{worker.name}", "state")
        return None if state is None else state.decode()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-6000:]}" for w in self.workers)


@contextlib.contextmanager
def worker_env(
    tmp_path: Path, redis_url: str, content_dir: Path, **settings: str
) -> Iterator[WorkerEnv]:
    """A test's own queue and model store on ``redis_url``; workers killed at the end.

    ``settings`` are extra ``STYLIZE_*`` variables of its workers (``RECONCILE_GRACE_S="2"``).
    """
    queue_name = f"training-{uuid.uuid4().hex[:8]}"
    store_url = (tmp_path / "models").as_uri()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "STYLIZE_REDIS_URL": redis_url,
        "STYLIZE_MODEL_STORE": store_url,
        "STYLIZE_CONTENT_DIR": str(content_dir),
        "STYLIZE_MIN_CONTENT_PHOTOS": "0",  # the fixture folder holds a few samples only
        "STYLIZE_DEVICE": "cpu",
        "STYLIZE_TRAINING_QUEUE": queue_name,
        "STYLIZE_PROGRESS_INTERVAL_S": "0.2",
        # A preview is a 256-px forward and a PNG (~45 ms on one thread here): every 4
        # steps it added half again to the 64-px steps (~22 ms). The first comes at once
        # and the final one at the end, so every run still makes both kinds.
        "STYLIZE_PREVIEW_EVERY": "50",
        "STYLIZE_LOCK_TTL_S": "5",
        # The speed calibration at start is tested with the whole stack (tests/e2e).
        "STYLIZE_CALIBRATE": "false",
        # Scores (200 optimization steps at 256 px) are tested where a test turns them on.
        "STYLIZE_SCORE": "false",
        "OMP_NUM_THREADS": "1",  # two workers on two cores must not oversubscribe
        **{f"STYLIZE_{k}": v for k, v in settings.items()},
    }
    redis = Redis.from_url(redis_url)
    queue = Queue(queue_name, connection=redis, serializer=JSONSerializer)
    setup = WorkerEnv(redis, queue, open_store(store_url), env, tmp_path)
    try:
        yield setup
    finally:
        for worker in setup.workers:  # killed as a group even if dead: its scheduler
            with contextlib.suppress(Exception):
                worker.kill()
        for pid in setup.horse_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        redis.close()
