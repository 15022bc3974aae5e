"""Atomic writes: all or nothing, and the mode an ordinary write would give the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stylenet.files import atomic_write_bytes, current_umask


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path, mask: int) -> None:
    previous = os.umask(mask)
    try:
        assert current_umask() == mask
        atomic_write_bytes(tmp_path / "a" / "weights.safetensors", b"data")
        (tmp_path / "plain").write_bytes(b"data")
    finally:
        os.umask(previous)
    written = stat.S_IMODE((tmp_path / "a" / "weights.safetensors").stat().st_mode)
    assert written == 0o666 & ~mask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert (tmp_path / "a" / "weights.safetensors").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["weights.safetensors"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]
