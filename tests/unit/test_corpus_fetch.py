"""`stylize content fetch`: resumable download from a local HTTP server, checksums, extraction."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from stylenet import cli
from stylenet.corpus import CorpusError
from stylenet.corpus.fetch import download, fetch_dataset


def _archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(4):
            image = io.BytesIO()
            Image.new("RGB", (120 + i, 90), (40 * i, 100, 200)).save(image, "JPEG")
            archive.writestr(f"val2017/{i:012d}.jpg", image.getvalue())
        archive.writestr("val2017/README.txt", "not a photo")
    return out.getvalue()


class _Server:
    def __init__(self, body: bytes, honour_range: bool = True) -> None:
        self.body, self.honour_range, self.ranges = body, honour_range, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = 0
                if header and server.honour_range:
                    start = int(header.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/val2017.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server(_archive())
    yield running
    running.httpd.shutdown()


def test_fetch_downloads_verifies_and_resizes(tmp_path: Path, server: _Server) -> None:
    digest = hashlib.sha256(server.body).hexdigest()
    count = fetch_dataset(
        "coco2017-val",
        tmp_path / "out",
        url=server.url,
        sha256=digest,
        size=64,
        cache=tmp_path / "cache",
        limit=3,
    )
    photos = sorted((tmp_path / "out").glob("*.jpg"))
    assert count == 3 and photos[0].name == "coco-000000000000.jpg"
    assert len(photos) == 3
    assert all(min(Image.open(p).size) == 64 for p in photos)
    # Run again: nothing is downloaded (the verified archive is cached), nothing rewritten.
    before = len(server.ranges)
    assert (
        fetch_dataset(
            "coco2017-val",
            tmp_path / "out",
            url=server.url,
            sha256=digest,
            size=64,
            cache=tmp_path / "cache",
        )
        == 4
    )
    assert len(server.ranges) == before


def test_download_resumes_with_a_range_request(tmp_path: Path, server: _Server) -> None:
    target = tmp_path / "a.zip"
    half = len(server.body) // 2
    (tmp_path / "a.zip.part").write_bytes(server.body[:half])
    download(server.url, target, sha256=hashlib.sha256(server.body).hexdigest())
    assert server.ranges == [f"bytes={half}-"]
    assert target.read_bytes() == server.body
    assert not (tmp_path / "a.zip.part").exists()


def test_download_restarts_when_the_server_ignores_range(tmp_path: Path) -> None:
    body = _archive()
    server = _Server(body, honour_range=False)
    try:
        (tmp_path / "a.zip.part").write_bytes(b"stale bytes")
        download(server.url, tmp_path / "a.zip", md5=hashlib.md5(body).hexdigest())
        assert (tmp_path / "a.zip").read_bytes() == body
    finally:
        server.httpd.shutdown()


def test_checksum_mismatch_fails_cleanly(tmp_path: Path, server: _Server, capsys) -> None:
    code = cli.main(
        [
            "content",
            "fetch",
            "coco2017-val",
            "--url",
            server.url,
            "--sha256",
            "0" * 64,
            "--dest",
            str(tmp_path / "out"),
            "--package-cache",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "sha256 is" in err and "expected 0000" in err and "Traceback" not in err
    assert not list((tmp_path / "cache").iterdir())  # the bad download is gone
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_unreachable_url_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="cannot download"):
        download("http://127.0.0.1:9/none.zip", tmp_path / "x.zip", timeout_s=2)


def test_cli_fetch_prints_the_count(tmp_path: Path, server: _Server, capsys) -> None:
    code = cli.main(
        [
            "content",
            "fetch",
            "coco2017-val",
            "--url",
            server.url,
            "--limit",
            "2",
            "--sha256",
            hashlib.sha256(server.body).hexdigest(),
            "--size",
            "32",
            "--dest",
            str(tmp_path / "out"),
            "--package-cache",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    assert "coco2017-val: 2 photos" in capsys.readouterr().out
