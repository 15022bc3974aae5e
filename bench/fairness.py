"""A light client's latency while another key floods ``POST /stylize`` (issue 23, item 3).

Publishes a real generator (2 training iterations with the real VGG loss), starts a
redis-server and ``python -m service`` (127.0.0.1 only) with two user keys, and measures
the light key's sequential requests (one at a time, ``--think`` seconds apart):

* ``unloaded``: nobody else.
* ``flood``: the heavy key keeps ``--heavy`` connections busy (closed loop, a new request
  as soon as one is answered) from a process of its own.
* ``flood, one key``: the same flood, the light client sending with the heavy key: one
  client to the batcher, so oldest-first, as the batcher served everyone before it was
  fair between keys.
* ``flood, rate limit``: the service limits every key to ``--rate`` requests a second
  (burst ``2 × rate``); the heavy key ignores its 429s and ``Retry-After`` and goes on.
* ``flood, rate limit, polite``: the same, the heavy key's connections each waiting out
  the ``Retry-After`` of a 429.

Prints a Markdown table and writes JSON (``bench/results/fairness-<device>.json``).
Not a test: timings depend on the machine, which the load generator shares.

    python bench/fairness.py
    python bench/fairness.py --size 512 --heavy 32 --light 100
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench_service import make_generator  # noqa: E402
from redis_server import RedisProcess  # noqa: E402
from service_load import percentile, read_response  # noqa: E402
from service_process import running_service  # noqa: E402

from model_store import open_store  # noqa: E402
from stylenet import samples  # noqa: E402

HEAVY_KEY = "bench-heavy-key-0001"
LIGHT_KEY = "bench-light-key-0002"
STYLE = "bench"


def photo_jpeg(size: int) -> bytes:
    out = io.BytesIO()
    samples.sample("astronaut").resize((size, size)).save(out, "JPEG", quality=90)
    return out.getvalue()


def _request(host: str, key: str, jpeg: bytes) -> bytes:
    return (
        f"POST /stylize?style={STYLE}&format=jpeg HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    ).encode() + jpeg


async def _flood_connection(
    host: str, port: int, request: bytes, until: float, stop: Any, codes: Counter, polite: bool
) -> None:
    """One keep-alive connection, a new request as soon as the last is answered."""
    while time.monotonic() < until and not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < until and not stop.is_set():
                writer.write(request)
                status, headers = await read_response(reader)
                codes[status] += 1
                if "close" in headers.get("connection", "").lower():
                    break
                if polite and status == 429:
                    await asyncio.sleep(float(headers.get("retry-after", "1")))
        except (OSError, asyncio.IncompleteReadError):
            codes["disconnected"] += 1
        finally:
            writer.close()


def _flood(
    base: str, jpeg: bytes, connections: int, seconds: float, stop: Any, out: Any, polite: bool
) -> None:
    """The heavy client (its own process): ``connections`` closed loops for ``seconds``."""
    host, port = base.removeprefix("http://").split(":")
    request = _request(host, HEAVY_KEY, jpeg)
    codes: Counter = Counter()

    async def run() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(
            *(
                _flood_connection(host, int(port), request, until, stop, codes, polite)
                for _ in range(connections)
            )
        )

    asyncio.run(run())
    out.put({str(k): v for k, v in codes.items()})


@contextmanager
def flooding(base: str, jpeg: bytes, connections: int, seconds: float, polite: bool):
    """Run the heavy client in a process of its own; yield a function that returns its counts."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    process = multiprocessing.Process(
        target=_flood, args=(base, jpeg, connections, seconds, stop, queue, polite), daemon=True
    )
    process.start()
    result: dict[str, Any] = {}
    try:
        time.sleep(2.0)  # the flood fills the queue before the light client starts
        yield result
    finally:
        stop.set()  # each connection ends after its request in flight
        try:
            result.update(queue.get(timeout=120))
        except Empty:  # the flood process died: report without its counts
            result["lost"] = 1
        process.join(10)
        if process.is_alive():
            process.terminate()


def light_client(base: str, jpeg: bytes, key: str, n: int, think_s: float) -> dict[str, Any]:
    """``n`` sequential requests, ``think_s`` apart; latency of the answered ones."""
    latencies, codes = [], Counter()
    with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}) as c:
        for _ in range(n):
            started = time.perf_counter()
            r = c.post(
                "/stylize",
                params={"style": STYLE, "format": "jpeg"},
                content=jpeg,
                headers={"content-type": "image/jpeg"},
            )
            elapsed = time.perf_counter() - started
            codes[r.status_code] += 1
            if r.status_code == 200:
                latencies.append(elapsed)
            time.sleep(think_s)
    return {
        "requests": n,
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
    }


def scenario(
    name: str,
    base: str,
    jpeg: bytes,
    args: argparse.Namespace,
    *,
    flood: bool,
    light_key: str = LIGHT_KEY,
    polite: bool = False,
) -> dict[str, Any]:
    print(f"... {name}", file=sys.stderr)
    seconds = args.light * (args.think + 2.0) + 10  # outlasts the light client
    if not flood:
        return {
            "scenario": name,
            "light": light_client(base, jpeg, light_key, args.light, args.think),
        }
    with flooding(base, jpeg, args.heavy, seconds, polite) as heavy:
        started = time.monotonic()
        light = light_client(base, jpeg, light_key, args.light, args.think)
        elapsed = time.monotonic() - started
    heavy_ok = heavy.get("200", 0)
    return {
        "scenario": name,
        "light": light,
        "heavy": {
            "codes": heavy,
            "connections": args.heavy,
            "ok_per_s_approx": round(heavy_ok / (elapsed + 2.0), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256, help="square JPEG side")
    parser.add_argument("--width", type=float, default=1.0, help="generator width")
    parser.add_argument("--heavy", type=int, default=24, help="heavy client's connections")
    parser.add_argument("--light", type=int, default=60, help="light client's requests")
    parser.add_argument("--think", type=float, default=0.5, help="light client's pause (s)")
    parser.add_argument("--rate", type=float, default=4.0, help="per-key rate (last scenario)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or REPO / "bench" / "results" / f"fairness-{args.device}.json"
    jpeg = photo_jpeg(args.size)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store_url = (root / "models").as_uri()
        store = open_store(store_url)
        store.create(jpeg, name="bench", style_id=STYLE)
        store.publish(STYLE, make_generator(None, args.width), metadata={}, metrics={})
        redis = RedisProcess(root)
        redis.start()
        env = {
            "STYLIZE_REDIS_URL": redis.url,
            "STYLIZE_API_KEYS": f"{HEAVY_KEY},{LIGHT_KEY}",
            "STYLIZE_WARM_STYLES": STYLE,
            "STYLIZE_WARM_SIDES": str(args.size),
        }
        try:
            with running_service(store_url, args.device, env, root / "service.log") as (base, _):
                rows.append(
                    scenario("unloaded", base, jpeg, args, flood=False, light_key=LIGHT_KEY)
                )
                rows.append(scenario("flood", base, jpeg, args, flood=True, light_key=LIGHT_KEY))
                rows.append(
                    scenario("flood, one key", base, jpeg, args, flood=True, light_key=HEAVY_KEY)
                )
            limited = {
                **env,
                "STYLIZE_STYLIZE_RATE_PER_S": str(args.rate),
                "STYLIZE_STYLIZE_BURST": str(int(2 * args.rate)),
            }
            with running_service(store_url, args.device, limited, root / "service.log") as run:
                base = run[0]
                rows.append(scenario("flood, rate limit", base, jpeg, args, flood=True))
                rows.append(
                    scenario("flood, rate limit, polite", base, jpeg, args, flood=True, polite=True)
                )
        finally:
            redis.stop()
    unloaded_p99 = rows[0]["light"]["p99_ms"]
    for row in rows:
        row["light"]["p99_vs_unloaded"] = round(row["light"]["p99_ms"] / unloaded_p99, 2)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "device": args.device},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        f"\n{args.size}² JPEG, {args.device}, {os.cpu_count()} CPUs; light client: "
        f"{args.light} sequential requests, {args.think} s apart; heavy: {args.heavy} connections\n"
    )
    print(
        "| scenario | light p50 ms | p95 | p99 | max | p99 / unloaded | light codes | heavy codes |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        light, heavy = row["light"], row.get("heavy", {}).get("codes", {})
        print(
            f"| {row['scenario']} | {light['p50_ms']} | {light['p95_ms']} | {light['p99_ms']} "
            f"| {light['max_ms']} | {light['p99_vs_unloaded']}× | {light['codes']} "
            f"| {heavy or '-'} |"
        )
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
