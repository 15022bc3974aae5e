"""The shared folder of a group of HTTP processes: readiness with dead members."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from service.processes import METRICS_SUBDIR, ProcessGroup
from service.settings import ServiceSettings


def test_ready_count_ignores_processes_that_died(tmp_path: Path) -> None:
    (tmp_path / METRICS_SUBDIR).mkdir()
    group = ProcessGroup(tmp_path, size=2)
    assert group.ready_count() == 0
    group.mark_ready()
    assert group.ready_count() == 1
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"ready-{int(dead.stdout)}"
    stale.touch()  # a process killed before it could leave
    assert group.ready_count() == 1 and not stale.exists()
    group.leave()
    assert group.ready_count() == 0


def test_a_killed_process_not_yet_reaped_is_not_ready(tmp_path: Path) -> None:
    """Until uvicorn's supervisor reaps a killed process it is a zombie, which
    ``kill(pid, 0)`` still finds: ``/readyz`` must not count it (a CI run saw 200)."""
    (tmp_path / METRICS_SUBDIR).mkdir()
    group = ProcessGroup(tmp_path, size=2)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f"ready-{child.pid}").touch()
        assert group.ready_count() == 1
        child.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert group.ready_count() == 0  # still a zombie: not reaped yet
    finally:
        child.kill()
        child.wait()


def test_workers_and_threads_defaults() -> None:
    auto = ServiceSettings(torch_threads=0, workers=0)
    assert auto.effective_workers("cpu") == 1
    assert auto.effective_workers("cuda") >= 1
    assert ServiceSettings(workers=3).effective_workers("cpu") == 3
    assert ServiceSettings(workers=64, torch_threads=0).effective_torch_threads() == 1
    assert ServiceSettings(workers=2, torch_threads=5).effective_torch_threads() == 5
