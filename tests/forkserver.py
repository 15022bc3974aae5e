"""A fork server for the suite's ``python -m worker`` and ``python -m service`` processes.

Starting ``python -m worker`` costs about 3 CPU-seconds before it does anything: the
import of torch, stylenet and the job code (``python -m service``: about 2.5). The suite
starts about a hundred of them, so on a 2-core machine that alone was minutes of the
suite's time. Here one server per program and test process imports the program's
``__main__`` module once (its top level only: what it sets before torch loads, such as
the service's ``OMP_WAIT_POLICY``, is set as in a fresh interpreter), and for the worker
what it imports itself before it forks jobs (``worker.__main__.PRELOAD``: torch and the
job code, which read no environment when imported); each process a test
starts is a ``fork`` of it that then runs ``python -m <program>`` exactly as the
interpreter would (``runpy``), in its own session, with the test's environment, working
directory and log file. The programs' own code is unchanged and fully real: RQ and its
work horses, uvicorn and its process manager, signals and exit statuses.

What a fork does not redo, and how it is made equal to a fresh interpreter:

* libgomp reads ``OMP_NUM_THREADS`` when torch is loaded: the child sets torch's thread
  count from its own environment.
* ``atexit`` handlers run at the child's end, as at a normal interpreter exit.
* The server reaps its children (SIGCHLD) and answers for their exit status, so
  :class:`ForkedProcess` offers the part of ``subprocess.Popen`` the tests use: ``pid``,
  ``poll``, ``wait``, ``returncode``, ``send_signal``, ``kill``, ``terminate``.

```STYLIZE_TEST_FORKSERVER=0`` starts real interpreters instead (to rule the server out
when a test behaves oddly).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def enabled() -> bool:
    """Whether tests start workers through the fork server (on unless set to ``0``)."""
    return os.environ.get("STYLIZE_TEST_FORKSERVER", "1") != "0"


class ForkedProcess:
    """A process forked by the server: the ``subprocess.Popen`` calls the tests make."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self._server = server
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status (negative: killed by that signal), or ``None`` while running."""
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status; ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the process unless it has ended (its pid may then belong to another)."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The client side: one server process, started on first use, asked over pipes.

    The server ends with its stdin, that is with the test process; its children live on
    (the tests stop those).
    """

    def __init__(self, module: str) -> None:
        self.module = module
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, __file__, self.module],
                    cwd=REPO,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            assert self._process.stdin is not None and self._process.stdout is not None
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("the test fork server ended (see the test output above)")
        return json.loads(line)

    def start(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> ForkedProcess:
        """Fork ``python -m <module> *args`` with this environment; output to ``log``."""
        log.write_bytes(b"")  # there when this returns, as with Popen's redirection
        reply = self._request(
            {"op": "fork", "args": args, "env": env, "cwd": str(cwd), "log": str(log)}
        )
        return ForkedProcess(self, reply["pid"], [sys.executable, "-m", self.module, *args])

    def returncode(self, pid: int) -> int | None:
        return self._request({"op": "poll", "pid": pid})["returncode"]


_servers: dict[str, ForkServer] = {}


def start_module(
    module: str, args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> ForkedProcess | subprocess.Popen[bytes]:
    """Start ``python -m module *args`` in its own session, output to ``log``."""
    if enabled():
        return _servers.setdefault(module, ForkServer(module)).start(args, env, cwd, log)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# The server side -----------------------------------------------------------------------

_exited: dict[int, int] = {}


def _reap(*_: object) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _exited[pid] = os.waitstatus_to_exitcode(status)


def _run_child(module: str, request: dict[str, Any]) -> None:
    """In the forked child: become ``python -m module`` and never return."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        # Over the server's pipes: fds 0 and 1 were its only ends of them in this child.
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(devnull)
        import torch

        if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # libgomp read it at load
            torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        import runpy

        sys.argv = [module, *request["args"]]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(module: str) -> None:
    """Import ``module.__main__`` once, then fork a child per request read from stdin."""
    sys.path.insert(0, str(REPO))
    import importlib

    main = importlib.import_module(f"{module}.__main__")
    # What the worker imports before it forks its first job, here once: torch and the
    # job code (~3 CPU-s); its main() finds them loaded, as its work horses do.
    for name in getattr(main, "PRELOAD", ()):
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test's Ctrl-C is for pytest
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "fork":
            out.flush()
            pid = os.fork()
            if pid == 0:
                _run_child(module, request)
            reply: dict[str, Any] = {"pid": pid}
        else:
            _reap()
            reply = {"returncode": _exited.get(request["pid"])}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    serve(sys.argv[1])
