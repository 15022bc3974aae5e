"""A burst of large photos on the normal lane, before and after admission by cost (#24).

Was: 50 concurrent 4000×3000 photos at ``max_side=2048`` got no 200 (41 × 504 at 30 s,
9 × 429 only after 24–26 s) and the API's RSS peaked at 4.22 GB. Starts ``python -m
service`` (one process, CPU unless ``--device``) on a store with one published generator
and sends ``--n`` concurrent uploads of one 4000×3000 JPEG photo, once per budget:

* ``off``: neither budget (``STYLIZE_INFLIGHT_PIXELS`` 10¹², ``STYLIZE_INFLIGHT_BYTES`` 0);
* ``pixels``: the pixel budget alone (its default; no memory budget);
* ``default``: both budgets at their defaults;
* ``no-deadline``: both budgets at their defaults, time-aware admission off
  (``STYLIZE_DEADLINE_ADMISSION=false``: requests wait and may get 504);
* a number: ``STYLIZE_INFLIGHT_BYTES`` of that many MiB, the pixel budget's default.

Time-aware admission (``service/runtime/pace.py``) is on in every run but ``no-deadline``:
a request the work ahead would keep past its deadline gets 503 ``would_time_out`` at once.
Each run first sends one request alone (``--lone``: its status and seconds; a forward
that fits the deadline is answered, one that does not is refused at once), then the
burst. Reports 200/429/503/504 counts, p50/p99 latency of the 200s, 429s and 503s, the service
process's RSS when ready (idle), at its peak (psutil, sampled every 50 ms) and 5 s after
the burst, and the bound the memory budget promises: idle + ``inflight_bytes`` (the large
lane's tiled image is charged to it too), and the machine's load average before and
after (other work on the machine slows every forward). Prints a Markdown table and
writes JSON (``bench/results/burst.json``). Not a test: the load generator shares the
machine.

    python bench/burst.py
    python bench/burst.py --n 10 --budgets pixels,default
    python bench/burst.py --budgets default --max-side 1024
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from bench_service import make_generator  # noqa: E402
from machine import machine as bench_machine  # noqa: E402
from service_load import percentile  # noqa: E402
from service_process import running_service  # noqa: E402

from model_store import open_store  # noqa: E402
from stylenet import samples  # noqa: E402

OFF = str(10**12)
MiB = 1 << 20
#: STYLIZE_INFLIGHT_BYTES's default (service/settings.py).
DEFAULT_BYTES = 2048 * MiB


def photo_jpeg(width: int, height: int) -> bytes:
    """A real photo (scikit-image's) upscaled to ``width × height``, as a camera JPEG."""
    image = samples.sample(samples.PHOTOS[0]).convert("RGB").resize((width, height))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class PeakRss:
    """Sample a process's RSS (with its children) every ``every`` seconds; keep the peak."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.baseline = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)]
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


async def burst(base: str, jpeg: bytes, n: int, max_side: int) -> list[tuple[int, float]]:
    limits = httpx.Limits(max_connections=n + 4)
    # Past the large lane's own limit (STYLIZE_LARGE_REQUEST_TIMEOUT_S, 900 s).
    async with httpx.AsyncClient(base_url=base, timeout=960, limits=limits) as http:

        async def one() -> tuple[int, float]:
            started = time.perf_counter()
            r = await http.post(
                "/stylize",
                params={"style": "bench", "max_side": str(max_side)},
                content=jpeg,
                headers={"content-type": "image/jpeg"},
            )
            return r.status_code, time.perf_counter() - started

        return await asyncio.gather(*(one() for _ in range(n)))


def summarize(
    name: str,
    results: list[tuple[int, float]],
    rss: PeakRss,
    budget: int | None,
    after: int,
    lone: tuple[int, float] | None = None,
) -> dict[str, Any]:
    codes = Counter(code for code, _ in results)
    row: dict[str, Any] = {"budget": name, "codes": dict(sorted(codes.items()))}
    if lone is not None:
        row["lone"] = {"code": lone[0], "seconds": lone[1]}
    for code in (200, 429, 503, 504):
        times = [t for c, t in results if c == code]
        row[f"p50_{code}_s"] = percentile(times, 50) if times else None
        row[f"p99_{code}_s"] = percentile(times, 99) if times else None
    row["rss_baseline_mb"] = rss.baseline / 1e6
    row["rss_peak_mb"] = rss.peak / 1e6
    row["rss_after_mb"] = after / 1e6
    row["inflight_bytes_mb"] = None if budget is None else budget / MiB
    row["bound_mb"] = None if budget is None else (rss.baseline + budget) / 1e6
    return row


def budget_env(name: str) -> tuple[dict[str, str], int | None]:
    """The service's environment for a budget name, and its memory budget in bytes."""
    if name == "off":
        return {"STYLIZE_INFLIGHT_PIXELS": OFF, "STYLIZE_INFLIGHT_BYTES": "0"}, None
    if name == "pixels":
        return {"STYLIZE_INFLIGHT_BYTES": "0"}, None
    if name == "default":
        return {}, DEFAULT_BYTES
    if name == "no-deadline":
        return {"STYLIZE_DEADLINE_ADMISSION": "false"}, DEFAULT_BYTES
    return {"STYLIZE_INFLIGHT_BYTES": str(int(name) * MiB)}, int(name) * MiB


def table(rows: list[dict[str, Any]]) -> str:
    def fmt(v: float | None) -> str:
        return "–" if v is None else f"{v:.2f}"

    lines = [
        "| budget | 200 | 429 | 503 | 504 | other | 200 p50/p99 s | 429 p50/p99 s "
        "| 503 p50/p99 s | RSS idle → peak → after MB | bound MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["codes"]
        other = sum(v for k, v in c.items() if k not in (200, 429, 503, 504))
        lines.append(
            f"| {r['budget']} | {c.get(200, 0)} | {c.get(429, 0)} | {c.get(503, 0)} "
            f"| {c.get(504, 0)} | {other} "
            f"| {fmt(r['p50_200_s'])}/{fmt(r['p99_200_s'])} "
            f"| {fmt(r['p50_429_s'])}/{fmt(r['p99_429_s'])} "
            f"| {fmt(r['p50_503_s'])}/{fmt(r['p99_503_s'])} "
            f"| {r['rss_baseline_mb']:.0f} → {r['rss_peak_mb']:.0f} → {r['rss_after_mb']:.0f} "
            f"| {'–' if r['bound_mb'] is None else round(r['bound_mb'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--max-side", type=int, default=2048)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--budgets", default="pixels,default", help="off, pixels, default, or MiB of memory"
    )
    parser.add_argument("--width", type=float, default=1.0, help="width of the generator")
    parser.add_argument(
        "--lone", action=argparse.BooleanOptionalAction, default=True, help="one request first"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/burst.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    jpeg = photo_jpeg(width, height)
    work = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    store_url = (work / "models").as_uri()
    store = open_store(store_url)
    png = io.BytesIO()
    samples.sample(samples.TEXTURE).save(png, "PNG")
    store.create(png.getvalue(), name="bench", style_id="bench")
    store.publish("bench", make_generator(None, args.width))
    machine = bench_machine(
        cpus=len(os.sched_getaffinity(0)),
        memory_gb=round(psutil.virtual_memory().total / 1e9, 1),
        device=args.device,
    )
    print(
        f"# {machine}; {args.n} × {args.size} JPEG ({len(jpeg) / 1e6:.1f} MB) at "
        f"max_side={args.max_side}; log {work / 'service.log'}",
        flush=True,
    )
    rows = []
    for name in args.budgets.split(","):
        extra, budget = budget_env(name)
        env = {"STYLIZE_WORKERS": "1", "STYLIZE_WARM_STYLES": "bench", **extra}
        log = work / "service.log"
        with running_service(store_url, args.device, env, log) as (base, pid):
            load_before = load_average()
            with PeakRss(pid) as rss:
                lone = asyncio.run(burst(base, jpeg, 1, args.max_side))[0] if args.lone else None
                results = asyncio.run(burst(base, jpeg, args.n, args.max_side))
            time.sleep(5)  # what the process keeps once the burst is over
            after = rss._rss()
        rows.append(summarize(name, results, rss, budget, after, lone))
        rows[-1]["load_average"] = {"before": load_before, "after": load_average()}
        print(f"# lone request: {lone}; load average {rows[-1]['load_average']}", flush=True)
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine,
                "n": args.n,
                "size": args.size,
                "max_side": args.max_side,
                "runs": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
