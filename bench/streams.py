"""``/healthz`` while 2,000 event streams are attempted (issue 24, item 1).

Was: 1,100 streams from one client held every connection the server allows, and
``/healthz``, ``/readyz`` and ``/styles`` answered 503 for as long as they were open.
Starts a redis-server and ``python -m service`` (127.0.0.1 only, default limits:
``limit_concurrency`` 1024, 16 streams per client, 512 per process) on a store holding one
style that never settles, then for each scenario:

* ``unloaded``: nobody else.
* ``one client``: one address opens ``--streams`` streams (``--openers`` at a time) and
  holds those admitted for ``--hold`` seconds.
* ``many clients``: the same number spread over ``--clients`` loopback addresses
  (127.0.0.2, 127.0.0.3, ...), 16 each by default: the per-process cap is what holds.

Meanwhile a prober asks ``GET /healthz`` every ``--every`` seconds on a new connection each
time (as an orchestrator's probe does) and records its latency and status; ``/readyz`` and
``/styles`` are asked once while the streams are held. While they are held, the cost of
following the style is measured: the API process's CPU seconds per second, its read
system calls per second (each poll of the style reads its manifest) and the commands per
second Redis processed (each look at the queue to price a queued style; the stream
leases). Prints a Markdown table and writes JSON (``bench/results/streams.json``). Not a
test: timings depend on the machine, which the load generator shares.

    python bench/streams.py
    python bench/streams.py --streams 4000 --hold 30
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from redis import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from PIL import Image  # noqa: E402
from redis_server import running_redis  # noqa: E402
from service_load import percentile  # noqa: E402
from service_process import running_service  # noqa: E402

from model_store import open_store  # noqa: E402

STYLE = "never-settles"


async def _exchange(port: int, request: bytes, source: str | None) -> tuple[int, Any]:
    """Send ``request``; return (status, the open writer for a 200 stream, else None)."""
    local = (source, 0) if source else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=local)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status == 200 and b"text/event-stream" in head:
        return status, writer
    writer.close()
    return status, None


async def _open_streams(
    port: int, count: int, openers: int, sources: list[str | None], held: list[Any]
) -> Counter[str]:
    request = f"GET /styles/{STYLE}/events HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    outcomes: Counter[str] = Counter()
    gate = asyncio.Semaphore(openers)

    async def one(n: int) -> None:
        async with gate:
            try:
                status, writer = await _exchange(port, request, sources[n % len(sources)])
            except (OSError, asyncio.IncompleteReadError) as exc:
                outcomes[type(exc).__name__] += 1
                return
            outcomes[str(status)] += 1
            if writer is not None:
                held.append(writer)

    await asyncio.gather(*(one(n) for n in range(count)))
    return outcomes


async def _probe(port: int, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        status, _ = await asyncio.wait_for(
            _exchange(port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(), None), 30
        )
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        status = 0
    return status, time.perf_counter() - started


async def _prober(port: int, every: float, stop: asyncio.Event, out: list[tuple[int, float]]):
    while not stop.is_set():
        out.append(await _probe(port, "/healthz"))
        await asyncio.sleep(every)


def _counters(pid: int, redis: Redis) -> tuple[float, float, int, int]:
    """(time, API CPU seconds, API read syscalls, Redis commands processed) now."""
    proc = psutil.Process(pid)
    cpu = proc.cpu_times()
    commands = int(redis.info("stats")["total_commands_processed"])
    return time.monotonic(), cpu.user + cpu.system, proc.io_counters().read_count, commands


def _rates(before: tuple[float, float, int, int], after: tuple[float, float, int, int]) -> dict:
    seconds = after[0] - before[0]
    return {
        "api_cpu_s_per_s": round((after[1] - before[1]) / seconds, 3),
        "api_reads_per_s": round((after[2] - before[2]) / seconds, 1),
        "redis_commands_per_s": round((after[3] - before[3]) / seconds, 1),
    }


async def scenario(
    port: int,
    args: argparse.Namespace,
    sources: list[str | None] | None,
    counters: Callable[[], tuple[float, float, int, int]],
) -> dict:
    """Probe ``/healthz`` while streams from ``sources`` are opened and held (None: none)."""
    probes: list[tuple[int, float]] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(_prober(port, args.every, stop, probes))
    held: list[Any] = []
    outcomes: Counter[str] = Counter()
    others: dict[str, int] = {}
    started = time.perf_counter()
    if sources is not None:
        outcomes = await _open_streams(port, args.streams, args.openers, sources, held)
    opened_s = time.perf_counter() - started
    await asyncio.sleep(2)  # past the openings: what holding them costs
    before = counters()
    await asyncio.sleep(max(1.0, (args.hold if sources is not None else args.hold / 2) - 2))
    cost = _rates(before, counters())
    for path in ("/readyz", "/styles"):
        others[path] = (await _probe(port, path))[0]
    stop.set()
    await prober
    for writer in held:
        writer.close()
    latencies = [s for status, s in probes if status == 200]
    return {
        "streams_attempted": 0 if sources is None else args.streams,
        "clients": 0 if sources is None else len(sources),
        "outcomes": dict(outcomes),
        "open_s": round(opened_s, 2),
        "healthz_probes": len(probes),
        "healthz_not_200": sum(1 for status, _ in probes if status != 200),
        "healthz_p50_ms": round(1000 * percentile(latencies, 50), 1),
        "healthz_p99_ms": round(1000 * percentile(latencies, 99), 1),
        "healthz_max_ms": round(1000 * max(latencies, default=float("nan")), 1),
        "while_held": others,
        "held_cost": cost,
    }


def _store(root: Path) -> str:
    url = (root / "models").as_uri()
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "navy").save(png, "PNG")
    open_store(url).create(png.getvalue(), name="never trained", style_id=STYLE)  # queued
    return url


def _run(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with running_redis(root / "redis") as redis:
        client = Redis.from_url(redis.url)
        env = {
            "STYLIZE_REDIS_URL": redis.url,
            "STYLIZE_WARM_STYLES": "",
            "STYLIZE_WARM_SIDES": "32",
        }
        with running_service(_store(root), "cpu", env, root / "service.log") as (base, pid):
            port = int(base.rsplit(":", 1)[1])
            many = [f"127.0.0.{2 + n}" for n in range(args.clients)]
            for name, sources in (
                ("unloaded", None),
                ("one client", [None]),
                ("many clients", many),
            ):
                counters = lambda: _counters(pid, client)  # noqa: E731
                results[name] = asyncio.run(scenario(port, args, sources, counters))
                time.sleep(3)  # the server sees the disconnects and gives the slots back
    # Redis answered too late for a stream's count (0.5 s): that process counted alone.
    log = (root / "service.log").read_text(errors="replace")
    results["redis_fallbacks"] = log.count("event streams counted per process")
    return results


def main() -> None:
    """Run the scenarios and print/write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--openers", type=int, default=200, help="connections opening at once")
    parser.add_argument("--clients", type=int, default=125, help="addresses of 'many clients'")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds streams are held")
    parser.add_argument("--every", type=float, default=0.05, help="seconds between probes")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.streams + 512)), hard))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "redis").mkdir()
        results = _run(Path(folder), args)
    _print(results, args)
    out = args.out or REPO / "bench" / "results" / "streams.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "cpus": os.cpu_count(),
        "load_1m": os.getloadavg()[0],
        "args": vars(args) | {"out": str(out)},
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(
        f"\nRedis too slow to count a stream (per-process count used): {results['redis_fallbacks']}"
    )
    print(f"wrote {out}")


def _print(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\n{args.streams} streams attempted ({args.openers} opening at once), held "
        f"{args.hold:g} s; /healthz every {args.every:g} s on a new connection\n"
    )
    print(
        "| scenario | stream answers | /healthz p50 | p99 | max | /healthz not 200 "
        "| /readyz, /styles while held | API CPU s/s | API reads/s | Redis cmd/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["outcomes"].items())) or "-"
        others = ", ".join(str(v) for v in r["while_held"].values())
        print(
            f"| {name} | {answers} | {r['healthz_p50_ms']} ms | {r['healthz_p99_ms']} ms | "
            f"{r['healthz_max_ms']} ms | {r['healthz_not_200']} of {r['healthz_probes']} "
            f"| {others} | {r['held_cost']['api_cpu_s_per_s']} "
            f"| {r['held_cost']['api_reads_per_s']} | {r['held_cost']['redis_commands_per_s']} |"
        )


if __name__ == "__main__":
    main()
