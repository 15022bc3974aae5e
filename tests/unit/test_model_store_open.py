from __future__ import annotations

from pathlib import Path

import pytest

from model_store import InvalidStoreURL, ModelStore, open_store
from model_store.file_backend import FileBackend


def test_file_url_opens_a_directory_store(tmp_path: Path) -> None:
    store = open_store((tmp_path / "models").as_uri())
    assert isinstance(store, ModelStore)
    assert isinstance(store.backend, FileBackend)
    assert (tmp_path / "models" / "styles").is_dir()
    assert store.scratch_dir("mosaic") == tmp_path / "models" / "scratch" / "mosaic"
    assert "file://" in repr(store)


def test_bare_path_and_custom_scratch(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "m"), scratch_root=tmp_path / "ckpt")
    assert store.scratch_dir("x1").parent == tmp_path / "ckpt"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "http://example.com/models",
        "file://otherhost/data",
        "file:///data?x=1",
        "s3://",
        "s3:///prefix",
        "s3://bucket/prefix?addressing_style=sideways",
        "s3://bucket/prefix?region=eu-west-1",
        "s3://bucket/../escape",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        open_store(url)
