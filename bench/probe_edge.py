"""Probe a running service's edge with hostile requests; print a table, write JSON.

    python bench/probe_edge.py --url http://127.0.0.1:8000 --key <api key> --style scream

Each probe sends one bad request over a raw socket (or a handful in parallel) and
records the status line, the error code of a JSON answer, and how long the answer took
(``none`` when the server neither answered nor closed within ``--wait`` seconds). The
service must have API keys configured and ``--style`` must be a ready style. Used for
the before/after figures of the edge-limits work (issue 14 items 6-9, 11).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from service_testing import raw_request

MiB = 1024 * 1024


def exchange(
    port: int, chunks: Iterable[bytes], *, pause_s: float = 0.0, wait_s: float = 10.0
) -> dict[str, object]:
    """Send ``chunks`` (pausing between them) and read the answer; return what happened."""
    reply = raw_request(port, chunks, pause_s=pause_s, wait_s=wait_s)
    body = reply.body
    if isinstance(body, dict):
        code = (body.get("error") or {}).get("code") or f"{reply.status} body"
    else:
        code = f"text: {bytes(body)[:40].decode('latin-1')}" if body else None
    return {
        "status": str(reply.status) if reply.status else "none",
        "code": code,
        "seconds": round(reply.seconds, 2),
    }


def _streamed(head: bytes, filler: bytes, total: int, chunk: int = 64 * 1024) -> Iterable[bytes]:
    yield head
    sent = 0
    while sent < total:
        yield filler * (chunk // len(filler))
        sent += chunk
    yield b"\r\n\r\n"


def probes(port: int, key: str, style: str, wait_s: float) -> dict[str, Callable]:
    """The named probes; each returns :func:`exchange`'s result."""
    auth = f"Authorization: Bearer {key}\r\n".encode()

    def ex(chunks: Iterable[bytes], **kw: float) -> dict[str, object]:
        return exchange(port, chunks, wait_s=kw.pop("wait_s", wait_s), **kw)

    def json_post(path: str, body: bytes, with_key: bool = True) -> dict[str, object]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        return ex([head + (auth if with_key else b"") + b"\r\n" + body])

    def multipart_params(params: str) -> dict[str, object]:
        boundary = "b0undary"
        png = Path(__file__).resolve().parents[1] / "demo_styles"
        image = next(png.glob("*/style.*")).read_bytes()
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nprobe\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n{params}\r\n',
        ]
        body = (
            "".join(parts).encode()
            + (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                f'filename="s.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
        )
        body += image + f"\r\n--{boundary}--\r\n".encode()
        head = (
            f"POST /styles HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        return ex([head + auth + b"\r\n" + body])

    def parallel_big_headers() -> dict[str, object]:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(big_header, 64 * MiB) for _ in range(4)]
            time.sleep(1.0)
            health = ex([b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"])
            results = [f.result() for f in futures]
        return {**results[0], "healthz_s": health["seconds"], "healthz": health["status"]}

    def big_header(size: int) -> dict[str, object]:
        head = b"POST /stylize HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nX-Big: "
        return ex(_streamed(head, b"a", size), wait_s=max(wait_s, 30))

    def many_headers(n: int) -> dict[str, object]:
        lines = b"".join(b"X-H%d: v\r\n" % i for i in range(n))
        return ex([b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + lines + b"\r\n"])

    def half_body(path: str, with_key: bool) -> dict[str, object]:
        return ex(_half_body_chunks(path, with_key))

    def held(n: int, with_key: bool) -> dict[str, object]:
        # n clients each send half a body to POST /styles and wait: how many are answered,
        # how fast, and does /healthz still answer meanwhile?
        request = b"".join(_half_body_chunks("/styles", with_key))
        started = time.monotonic()
        selector = selectors.DefaultSelector()
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request)
            selector.register(sock, selectors.EVENT_READ)
        health = ex([b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"])
        statuses: Counter[str] = Counter()
        last = started
        while len(selector.get_map()) and time.monotonic() < started + wait_s:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = sock.recv(4096)
                statuses[data[9:12].decode() or "closed"] += 1
                selector.unregister(sock)
                sock.close()
                last = time.monotonic()
        unanswered = len(selector.get_map())
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        counts = [f"{k}x{v}" for k, v in statuses.items()]
        if unanswered:
            counts.append(f"nonex{unanswered}")
        return {
            "status": ",".join(counts),
            "code": f"{n - unanswered}/{n} answered",
            "seconds": round(last - started, 2),
            "healthz": health["status"],
            "healthz_s": health["seconds"],
        }

    def _half_body_chunks(path: str, with_key: bool) -> list[bytes]:
        kind = "application/json"
        if path == "/styles":
            kind = "multipart/form-data; boundary=b0undary"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {kind}\r\n"
            "Content-Length: 100000\r\n"
        ).encode()
        start = b"--b0undary\r\n" if path == "/styles" else b'{"params": {'
        return [head + (auth if with_key else b"") + b"\r\n" + start]

    nested = b'{"params": ' + b"[" * 100_000 + b"}"
    return {
        "64 MiB header": lambda: big_header(64 * MiB),
        "4 x 64 MiB headers, /healthz meanwhile": parallel_big_headers,
        "100,000 headers": lambda: many_headers(100_000),
        "1 MiB URL": lambda: ex(
            [b"GET /styles?x=" + b"a" * MiB + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"]
        ),
        "malformed request line": lambda: ex([b"GARBAGE\r\n\r\n"]),
        "headers stalled": lambda: ex([b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"]),
        "headers 1 byte / 0.5 s": lambda: ex(
            [b"G", *(bytes([c]) for c in b"ET /healthz HTTP/1.1\r\nHost: xxxxxxxxxxxxxxx\r\n")],
            pause_s=0.5,
        ),
        "connect, send nothing": lambda: ex([b""]),
        "POST /styles half body, no key": lambda: half_body("/styles", False),
        "POST /train half body, no key": lambda: half_body(f"/styles/{style}/train", False),
        "POST /styles half body, key": lambda: half_body("/styles", True),
        "POST /train half body, key": lambda: half_body(f"/styles/{style}/train", True),
        "1,000 half bodies, no key": lambda: held(1000, False),
        "1,000 half bodies, key": lambda: held(1000, True),
        "train style_weight Infinity": lambda: json_post(
            f"/styles/{style}/train", b'{"params": {"style_weight": Infinity}}'
        ),
        "train 100,000 nested [": lambda: json_post(f"/styles/{style}/train", nested),
        "train 5,000-digit seed": lambda: json_post(
            f"/styles/{style}/train", b'{"params": {"seed": ' + b"9" * 5000 + b"}}"
        ),
        "train iterations 1.5": lambda: json_post(
            f"/styles/{style}/train", b'{"params": {"iterations": 1.5}}'
        ),
        'train iterations "many"': lambda: json_post(
            f"/styles/{style}/train", b'{"params": {"iterations": "many"}}'
        ),
        "train not JSON": lambda: json_post(f"/styles/{style}/train", b"not json"),
        'train preset "fast"': lambda: json_post(
            f"/styles/{style}/train", b'{"params": {"preset": "fast"}}'
        ),
        "create params style_weight Infinity": lambda: multipart_params(
            '{"style_weight": Infinity}'
        ),
        "create params 100,000 nested [": lambda: multipart_params("[" * 100_000),
        "create params 5,000-digit seed": lambda: multipart_params('{"seed": ' + "9" * 5000 + "}"),
        'create params seed "abc"': lambda: multipart_params('{"seed": "abc"}'),
        "create params lossnet path": lambda: multipart_params(
            '{"lossnet": "../../../../../etc/passwd"}'
        ),
    }


def main() -> None:
    """Run every probe (or those named with --only) and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--style", default="scream")
    parser.add_argument("--wait", type=float, default=15.0, help="seconds to wait per probe")
    parser.add_argument("--only", nargs="*", help="substrings of probe names")
    parser.add_argument("--out", type=Path, default=Path("bench/results/probe_edge.json"))
    args = parser.parse_args()
    url = urlparse(args.url)
    if url.hostname not in ("127.0.0.1", "localhost"):
        parser.error("probes run against a local service (127.0.0.1)")
    table = probes(url.port or 80, args.key, args.style, args.wait)
    results = {}
    for name, probe in table.items():
        if args.only and not any(s in name for s in args.only):
            continue
        results[name] = probe()
        r = results[name]
        print(
            f"{name:42} {r['status']:>5} {r['seconds']:>7.2f} s  {r.get('code') or ''}", flush=True
        )
        if "healthz_s" in r:
            print(f"{'':42} /healthz meanwhile: {r['healthz']} in {r['healthz_s']} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"url": args.url, "results": results}, indent=2))


if __name__ == "__main__":
    main()
