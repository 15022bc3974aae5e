"""Many styles as one network: shared-base batching against per-style batches (issue 27).

Publishes ``--styles`` styles that share every convolution with one base (a real
generator, ``--generator``; each style is it with its own instance-norm γ/β, float16, as a
γ/β-only adaptation publishes them) into a temporary file store, then drives the service's
inference runtime (resolver, generator cache, batcher, device thread: no HTTP, no codecs)
with ``--clients`` concurrent clients, client ``i`` always asking for style ``i``:

* ``per-style``: ``STYLIZE_MIXED_BATCHES=false``, today's batching (one style per batch);
* ``shared``: one forward serves requests of different styles (per-sample γ/β).

Both at the same ``max_batch_size`` (default 8; the CPU default is 1, where neither mode
batches). Then loads ``--fit`` styles into a cache without a count limit and reports the
device bytes each mode holds, and how many styles fit in the default cache budget
(``STYLIZE_CACHE_MAX_BYTES``, 2 GiB). Prints a Markdown table, writes
``bench/results/mixed-styles-<device>.json``. Not a test.

    OMP_NUM_THREADS=1 python bench/mixed_styles.py --side 256 --requests 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402

from model_store import open_store  # noqa: E402
from service.metrics import ServiceMetrics  # noqa: E402
from service.runtime import BlendOptions, InferenceRuntime  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402
from stylenet import generator_to_bytes, load_generator  # noqa: E402
from stylenet.multistyle import norm_parameter_names  # noqa: E402

DEFAULT_GENERATOR = ROOT / "demo_styles" / "scream" / "generator.safetensors"


def publish_family(root: Path, base: bytes, count: int) -> str:
    """Publish ``count`` γ/β-only styles of ``base`` (s0, s1, …); return the store URL."""
    url = (root / "models").as_uri()
    store = open_store(url)
    model, info = load_generator(base)
    names = set(norm_parameter_names(model))
    original = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    png = (ROOT / "demo_styles" / "scream" / "style.jpg").read_bytes()
    for index in range(count):
        noise = torch.Generator().manual_seed(index)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in names:
                    param.copy_(original[name] + 0.3 * torch.randn(param.shape, generator=noise))
        data = generator_to_bytes(
            model, train_params=info.train_params, lossnet=info.lossnet, dtype="float16"
        )
        store.create(png, name=f"style {index}", style_id=f"s{index}")
        store.publish(f"s{index}", data, metrics={"init": {"kind": "base", "sha256": info.sha256}})
    return url


async def drive(settings: ServiceSettings, clients: int, requests: int, side: int) -> dict:
    """Run ``clients`` loops of ``requests`` stylizes each; return throughput and latency."""
    runtime = InferenceRuntime(settings, open_store(settings.model_store), ServiceMetrics())
    await runtime.start()
    try:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        generators = [
            await runtime.generator(await runtime.styles.resolve(f"s{i}")) for i in range(clients)
        ]
        for generator in generators:  # one forward each: threads and allocator warm
            await runtime.stylize(generator, pixels, BlendOptions(), time.monotonic() + 600)
        latencies: list[float] = []
        sizes: list[int] = []

        async def client(index: int) -> None:
            for _ in range(requests):
                started = time.perf_counter()
                result = await runtime.stylize(
                    generators[index], pixels, BlendOptions(), time.monotonic() + 600, f"c{index}"
                )
                latencies.append(time.perf_counter() - started)
                sizes.append(result.batch_size)

        started = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - started
        return {
            "images_per_s": round(clients * requests / wall, 3),
            "p50_s": round(statistics.median(latencies), 3),
            "p90_s": round(statistics.quantiles(latencies, n=10)[-1], 3),
            "mean_batch": round(statistics.fmean(sizes), 2),
            "families": runtime.mixer.families,
        }
    finally:
        await runtime.close()


def _rss_mb() -> float:
    """The process's resident memory now (MB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def fit(settings: ServiceSettings, count: int) -> dict:
    """Load ``count`` styles; return the cache's device bytes and the process's RSS growth."""
    runtime = InferenceRuntime(settings, open_store(settings.model_store), ServiceMetrics())
    await runtime.start()
    try:
        rss_before = _rss_mb()
        for index in range(count):
            await runtime.generator(await runtime.styles.resolve(f"s{index}"))
        sizes = sorted(entry.nbytes for entry in runtime.cache._entries.values())
        rss_after = _rss_mb()
        first, other = sizes[-1], sizes[0]
        budget = settings.cache_max_bytes
        return {
            "loaded": len(sizes),
            "cache_bytes": runtime.cache.nbytes,
            "first_style_bytes": first,
            "each_other_style_bytes": other,
            "styles_in_default_budget": 1 + (budget - first) // max(1, other),
            "rss_growth_mb": round(rss_after - rss_before, 1),
        }
    finally:
        await runtime.close()


def main() -> None:
    """Run the benchmark; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", type=Path, default=DEFAULT_GENERATOR)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=6, help="per client")
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per mode")
    parser.add_argument("--fit", type=int, default=48, help="styles loaded for the memory run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cpu-dtype", default="float32", choices=("auto", "float32", "bfloat16"))
    args = parser.parse_args()
    info = machine()
    print(f"machine: {json.dumps(info)}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        url = publish_family(Path(tmp), args.generator.read_bytes(), max(args.clients, args.fit))
        common = {
            "model_store": url,
            "device": args.device,
            "cpu_dtype": args.cpu_dtype,
            "warm_styles": [],
            "style_cache_ttl_s": 60.0,
        }
        runs: dict[str, list[dict]] = {"per-style": [], "shared": []}
        # Rounds alternate the modes: a shared machine's load drifts between runs.
        for _ in range(args.rounds):
            for mode, mixed in (("per-style", False), ("shared", True)):
                settings = ServiceSettings(
                    **common,
                    mixed_batches=mixed,
                    max_batch_size=args.max_batch,
                    cache_max_models=args.clients + 1,
                )
                runs[mode].append(
                    asyncio.run(drive(settings, args.clients, args.requests, args.side))
                )
                print(f"{mode}: {runs[mode][-1]}", file=sys.stderr)
        rows = {
            mode: {k: round(statistics.median(r[k] for r in found), 3) for k in found[0]}
            for mode, found in runs.items()
        }
        memory = {}
        for mode, mixed in (("per-style", False), ("shared", True)):
            settings = ServiceSettings(**common, mixed_batches=mixed, cache_max_models=args.fit)
            memory[mode] = asyncio.run(fit(settings, args.fit))
            print(f"{mode} memory: {memory[mode]}", file=sys.stderr)
    print(
        f"\n{args.clients} clients, each its own style, {args.side}² px, max batch "
        f"{args.max_batch}, medians of {args.rounds} alternating rounds, {args.device} "
        f"({info['cpu']}, {info['threads']} threads, "
        f"load {info['load_average'][0]:.1f})\n"
    )
    print("| batching | img/s | p50 s | p90 s | mean batch |")
    print("| --- | --- | --- | --- | --- |")
    for mode, row in rows.items():
        print(
            f"| {mode} | {row['images_per_s']} | {row['p50_s']} | {row['p90_s']} | "
            f"{row['mean_batch']} |"
        )
    print(f"\n{args.fit} styles loaded (cache limits lifted):\n")
    print("| cache | device MB held | per extra style | styles in 2 GiB | RSS growth MB |")
    print("| --- | --- | --- | --- | --- |")
    for mode, row in memory.items():
        print(
            f"| {mode} | {row['cache_bytes'] / 1e6:.1f} | "
            f"{row['each_other_style_bytes'] / 1e3:.1f} kB | "
            f"{row['styles_in_default_budget']} | {row['rss_growth_mb']} |"
        )
    out = ROOT / "bench" / "results" / f"mixed-styles-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": info,
                "args": vars(args) | {"generator": str(args.generator)},
                "throughput": rows,
                "memory": memory,
            },
            indent=2,
        )
    )
    print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
