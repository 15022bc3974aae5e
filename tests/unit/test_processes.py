"""A group of HTTP processes: readiness with dead members, a listening socket each."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest

from service.listeners import BALANCES, ReusePortSocket
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


def test_torch_threads_follow_omp_num_threads_unless_set(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert ServiceSettings(torch_threads=0, workers=1).effective_torch_threads() == 3
    assert ServiceSettings(torch_threads=2, workers=1).effective_torch_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert ServiceSettings(torch_threads=0, workers=64).effective_torch_threads() == 1


@pytest.mark.skipif(not BALANCES, reason="SO_REUSEPORT balances connections on Linux only")
def test_each_process_gets_a_listening_socket_of_its_own_and_a_share() -> None:
    """What uvicorn's process manager sends to each new process (pickled) becomes a new
    socket on the same port there; the parent's reserves the port without listening."""
    parent = ReusePortSocket.bind_to("127.0.0.1", 0)
    port = parent.getsockname()[1]
    listeners = [ForkingPickler.loads(ForkingPickler.dumps(parent)) for _ in range(2)]
    try:
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # another program cannot take the port
        for sock in listeners:
            assert type(sock) is socket.socket and sock.fileno() != parent.fileno()
            assert sock.getsockname() == ("127.0.0.1", port)
            sock.listen(128)
            sock.setblocking(False)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = [0, 0]
        deadline = time.monotonic() + 10
        while sum(accepted) < len(clients):
            assert time.monotonic() < deadline
            for i, sock in enumerate(listeners):
                with contextlib.suppress(BlockingIOError):
                    sock.accept()[0].close()
                    accepted[i] += 1
        # The kernel hashes connections over both listeners (a share under 13 of 64 has
        # a chance of about 1e-6); the parent's bound socket takes none.
        assert min(accepted) >= 13, accepted
        for client in clients:
            client.close()
    finally:
        parent.close()
        for sock in listeners:
            sock.close()
