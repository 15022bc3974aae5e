"""`make run` / `stylize up` on a port that is taken: one line, before anything starts."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_taken_port_is_said_in_one_line_before_anything_starts(
    busy_port: int, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    command = [sys.executable, "-m", "service.cli", "up", "--port", str(busy_port)]
    result = subprocess.run(
        [*command, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert f"port {busy_port} on 127.0.0.1 is already in use" in lines[0]
    assert f"make run PORT={busy_port + 10}" in lines[0]
    assert not data.exists()  # no Redis, worker or API was started


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_takes_a_port(busy_port: int) -> None:
    # `make test` has run `make setup` before, so `run` goes straight to `stylize up`.
    result = subprocess.run(
        ["make", "--no-print-directory", "run", f"PORT={busy_port}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode != 0
    assert f"stylize up --port {busy_port}" in result.stdout
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.stderr
