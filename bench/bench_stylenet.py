"""Benchmark stylenet: training iterations/s and inference latency / throughput.

Prints a table and writes JSON (``--out``, default ``bench/results/stylenet-<device>.json``).

    python bench/bench_stylenet.py                     # CPU: fp32 vs channels_last
    python bench/bench_stylenet.py --device cuda       # GPU: fp32, bf16, channels_last, batches
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from stylenet import TrainParams, build_generator, samples
from stylenet.train import train


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeat: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def bench_inference(
    arch: str, device: torch.device, sizes: list[int], repeat: int, batches: list[int]
) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    rows = []
    variants = [("fp32", False, None), ("fp32+channels_last", True, None)]
    if device.type == "cuda":
        variants += [("bf16", False, torch.bfloat16), ("bf16+channels_last", True, torch.bfloat16)]
    for name, channels_last, dtype in variants:
        model = build_generator(arch=arch).to(device).eval()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        for size in sizes:
            for batch in batches if device.type == "cuda" else [1]:
                x = (torch.rand(batch, 3, size, size, device=device) * 255).contiguous(
                    memory_format=fmt
                )
                autocast = (
                    torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                )

                def run(model=model, x=x, autocast=autocast) -> None:
                    with torch.inference_mode(), autocast:
                        model(x)

                times = _time(run, device, repeat if size < 1024 else max(2, repeat // 2))
                median = statistics.median(times)
                rows.append(
                    {
                        "arch": arch,
                        "variant": name,
                        "size": size,
                        "batch": batch,
                        "ms_median": round(median * 1000, 2),
                        "ms_p90": round(sorted(times)[int(0.9 * (len(times) - 1))] * 1000, 2),
                        "images_per_s": round(batch / median, 2),
                    }
                )
                print(_fmt_row(rows[-1]), flush=True)
    return rows


def bench_training(
    arch: str,
    device: torch.device,
    size: int,
    batch: int,
    iterations: int,
    content: Path,
    channels_last: bool = False,
) -> dict[str, Any]:
    style = samples.sample("immunohistochemistry")
    warm = 2
    params = TrainParams(
        arch=arch,
        image_size=size,
        style_size=size,
        batch_size=batch,
        iterations=iterations + warm,
        holdout=0,
        progress_every=1,
        checkpoint_every=0,
    )
    stamps: list[float] = []

    def on_progress(progress) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    train(
        style, content, params, on_progress=on_progress, device=device, channels_last=channels_last
    )
    measured = stamps[warm - 1 :]
    seconds = (measured[-1] - measured[0]) / (len(measured) - 1)
    row = {
        "arch": arch,
        "variant": ("bf16" if device.type == "cuda" else "fp32")
        + ("+channels_last" if channels_last else ""),
        "size": size,
        "batch": batch,
        "iterations": iterations,
        "s_per_iteration": round(seconds, 4),
        "iterations_per_s": round(1 / seconds, 3),
        "images_per_s": round(batch / seconds, 2),
    }
    print(
        f"train {arch:10s} {row['variant']:20s} {size}px batch {batch}: "
        f"{row['iterations_per_s']:.3f} it/s ({row['images_per_s']:.1f} img/s)",
        flush=True,
    )
    return row


def _fmt_row(row: dict[str, Any]) -> str:
    return (
        f"{row['arch']:10s} {row['variant']:20s} {row['size']:5d}px batch {row['batch']:2d}: "
        f"{row['ms_median']:9.2f} ms median {row['images_per_s']:8.2f} img/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--train-iterations", type=int, default=3)
    parser.add_argument("--archs", default="residual,multiscale")
    parser.add_argument("--batches", default="1,8", help="inference batch sizes (GPU only)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    archs = args.archs.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    machine = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(f"# {machine}")
    result: dict[str, Any] = {"machine": machine, "inference": [], "training": []}
    for arch in archs:
        result["inference"] += bench_inference(arch, device, sizes, args.repeat, batches)
    if not args.skip_train:
        with tempfile.TemporaryDirectory() as folder:
            content = Path(folder)
            samples.export_photos(content)
            iters = args.train_iterations if device.type == "cpu" else 20
            for arch in archs:
                for channels_last in (False, True) if device.type == "cuda" else (False,):
                    result["training"].append(
                        bench_training(arch, device, 256, 4, iters, content, channels_last)
                    )
    out = args.out or Path("bench/results") / f"stylenet-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    print("\n| arch | variant | size | batch | ms (median) | img/s |\n|---|---|---|---|---|---|")
    for row in result["inference"]:
        print(
            f"| {row['arch']} | {row['variant']} | {row['size']} | {row['batch']} | "
            f"{row['ms_median']} | {row['images_per_s']} |"
        )
    if result["training"]:
        print("\n| train arch | variant | size | batch | it/s | img/s |\n|---|---|---|---|---|---|")
        for row in result["training"]:
            print(
                f"| {row['arch']} | {row['variant']} | {row['size']} | {row['batch']} | "
                f"{row['iterations_per_s']} | {row['images_per_s']} |"
            )


if __name__ == "__main__":
    main()
