"""Load on the service's ``POST /stylize``: sequential requests, closed-loop concurrent
clients (a thread and an httpx client each, or lean raw asyncio connections), and the
percentiles of what they measured. Used by bench_service.py; ``percentile`` by the other
service benchmarks too.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from service_process import cpu_seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def post(client: httpx.Client, jpeg: bytes) -> tuple[int, float, dict[str, str]]:
    started = time.perf_counter()
    r = client.post(
        "/stylize",
        params={"style": "bench", "format": "jpeg"},
        content=jpeg,
        headers={"content-type": "image/jpeg"},
    )
    return r.status_code, time.perf_counter() - started, dict(r.headers)


def sequential(base: str, jpeg: bytes, n: int) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=600) as client:
        for _ in range(2):
            post(client, jpeg)  # connection and first-shape warm-up
        results = [post(client, jpeg) for _ in range(n)]
    latencies = [t for code, t, _ in results if code == 200]
    return {
        "requests": n,
        "errors": sum(code != 200 for code, _, _ in results),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "server_timing_last": results[-1][2].get("server-timing", ""),
    }


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read one HTTP/1.1 response off a keep-alive connection: its status and headers
    (lower-case names); the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers


async def _lean_client(
    host: str, port: int, request: bytes, count: int, start: asyncio.Event
) -> list[tuple[int, float, dict[str, str]]]:
    """One keep-alive connection sending the same prebuilt request ``count`` times.

    Parses only the status line and the headers it needs: a load generator as cheap as
    wrk's, so on a machine where the clients share the server's cores they take little
    of them (see ``--client``).
    """
    reader, writer = await asyncio.open_connection(host, port)
    await start.wait()
    results = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            status, headers = await read_response(reader)
            results.append((status, time.perf_counter() - started, headers))
    finally:
        writer.close()
    return results


def _lean_run(base: str, jpeg: bytes, clients: int, per_client: int) -> list[Any]:
    host, port = base.removeprefix("http://").split(":")
    request = (
        f"POST /stylize?style=bench&format=jpeg HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    ).encode() + jpeg

    async def run() -> list[Any]:
        start = asyncio.Event()
        tasks = [
            asyncio.ensure_future(_lean_client(host, int(port), request, per_client, start))
            for _ in range(clients)
        ]
        await asyncio.sleep(0.1)  # connections open before the clock starts
        start.set()
        return [r for rs in await asyncio.gather(*tasks) for r in rs]

    return asyncio.run(run())


def concurrent(
    base: str,
    jpeg: bytes,
    clients: int,
    per_client: int,
    pid: int = 0,
    client: str = "httpx",
) -> dict[str, Any]:
    """``clients`` closed-loop clients, each sending ``per_client`` requests.

    With the service's ``pid``, also reports its CPU time per answered request: on a GPU
    host that is the Python HTTP path's cost, the bound on one process's throughput.
    ``client``: ``httpx`` (a thread and an httpx client each) or ``lean`` (one asyncio
    loop, raw keep-alive connections, prebuilt requests); the CPU time the clients took
    per request is reported too, since on a small machine they share the server's cores.
    """
    barrier = threading.Barrier(clients)

    def client_loop(_: int) -> list[tuple[int, float, dict[str, str]]]:
        with httpx.Client(base_url=base, timeout=600) as session:
            barrier.wait()
            return [post(session, jpeg) for _ in range(per_client)]

    own_before = resource.getrusage(resource.RUSAGE_SELF)
    started, cpu_before = time.perf_counter(), cpu_seconds(pid) if pid else 0.0
    if client == "lean":
        results = _lean_run(base, jpeg, clients, per_client)
    else:
        with ThreadPoolExecutor(clients) as pool:
            results = [r for rs in pool.map(client_loop, range(clients)) for r in rs]
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(pid) - cpu_before if pid else float("nan")
    own = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime
    ok = [(t, h) for code, t, h in results if code == 200]
    rejected = [t for code, t, _ in results if code == 429]
    batch_sizes = [int(h.get("x-batch-size", "1")) for _, h in ok]
    return {
        "clients": clients,
        "requests": len(results),
        "ok": len(ok),
        "rejected_429": len(rejected),
        "other_errors": len(results) - len(ok) - len(rejected),
        "seconds": round(elapsed, 2),
        "images_per_s": round(len(ok) / elapsed, 3),
        "accepted_p50_ms": round(percentile([t for t, _ in ok], 50) * 1000, 1),
        "accepted_p99_ms": round(percentile([t for t, _ in ok], 99) * 1000, 1),
        "rejected_p50_ms": round(percentile(rejected, 50) * 1000, 1),
        "rejected_p99_ms": round(percentile(rejected, 99) * 1000, 1),
        "mean_batch": round(statistics.fmean(batch_sizes), 2) if batch_sizes else 0,
        "server_cpu_ms_per_ok": round(server_cpu * 1000 / max(1, len(ok)), 2),
        "client": client,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(results)), 2),
    }
