"""`stylize up`'s supervisor with real child processes: restarts, giving up, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from stack_testing import alive

from service.launcher import Supervisor


def _wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


def test_a_child_that_exits_is_started_again(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Exits at once the first two times, then stays up.
    script = f"import sys, time\nf = open({str(runs)!r}, 'a+'); f.write('x'); f.flush()\n"
    script += f"sys.exit(3) if len(open({str(runs)!r}).read()) < 3 else time.sleep(60)"
    supervisor = Supervisor(max_failures=5, stable_s=30, backoff_max_s=0.2)
    supervisor.start("flaky", [sys.executable, "-c", script], dict(os.environ))
    try:
        _wait(
            lambda: supervisor.check() is None and runs.exists() and len(runs.read_text()) == 3,
            30,
            "the third start",
        )
        child = supervisor.children[0]
        assert child.failures == 2 and child.last_code == 3
        assert child.process is not None and child.process.poll() is None
    finally:
        supervisor.stop(timeout_s=5)


def test_it_gives_up_on_a_child_that_keeps_failing(tmp_path: Path) -> None:
    supervisor = Supervisor(max_failures=3, stable_s=30, backoff_max_s=0.1)
    supervisor.start("broken", [sys.executable, "-c", "raise SystemExit(7)"], dict(os.environ))
    try:
        given_up = _wait(supervisor.check, 30, "the supervisor to give up")
        assert given_up.name == "broken" and given_up.failures == 3 and given_up.last_code == 7
    finally:
        supervisor.stop(timeout_s=5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    # A supervisor process whose child sleeps; the supervisor is SIGKILLed (no cleanup).
    pid_file = tmp_path / "child.pid"
    program = textwrap.dedent(
        f"""
        import os, sys, time
        from service.launcher import Supervisor
        s = Supervisor()
        p = s.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                    dict(os.environ))
        open({str(pid_file)!r}, "w").write(str(p.pid))
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program])
    try:
        child = int(_wait(lambda: pid_file.exists() and pid_file.read_text(), 30, "the child"))
        assert alive({child})
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _wait(lambda: not alive({child}), 10, "the orphaned child to die")
    finally:
        parent.kill()
        parent.wait()
