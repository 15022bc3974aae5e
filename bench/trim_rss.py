"""RSS after big forwards, before and after ``malloc_trim(0)`` (#24, service/runtime/trim.py).

Runs what a burst of large normal-lane requests does to the heap: ``--requests``
forwards of a default (width-1) generator at ``--size`` on threads other than the main
one (the service's device thread and codec pool), then reads the process's RSS before
and after :func:`service.runtime.trim.malloc_trim`. Prints a table and writes
``bench/results/trim_rss.json`` with the machine.

    .venv/bin/python bench/trim_rss.py --size 1024x768 --requests 3
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import machine
from service.runtime import trim
from stylenet.generators import GeneratorConfig, build_generator


def rss_mb() -> float:
    """The process's resident set size, MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    model = build_generator(GeneratorConfig()).eval()

    def forward(_: int) -> None:
        with torch.inference_mode():
            image = torch.full((1, 3, height, width), 128.0)
            model(image).round_().to(torch.uint8).numpy().copy()

    idle = rss_mb()
    with ThreadPoolExecutor(2) as pool:  # two threads: two arenas, as in the service
        list(pool.map(forward, range(args.requests)))
    after = rss_mb()
    trimmed = trim.malloc_trim()
    trimmed_rss = rss_mb()
    rows = {
        "idle_mb": round(idle),
        "after_burst_mb": round(after),
        "after_trim_mb": round(trimmed_rss),
        "returned_mb": round(after - trimmed_rss),
        "trim_returned_memory": trimmed,
    }
    print(f"{args.requests} forwards at {width}x{height} (trim available: {trim.available()})")
    for key, value in rows.items():
        print(f"  {key:22} {value}")
    out = Path(__file__).parent / "results" / "trim_rss.json"
    out.parent.mkdir(exist_ok=True)
    result = {"size": args.size, "requests": args.requests, **rows, "machine": machine()}
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
