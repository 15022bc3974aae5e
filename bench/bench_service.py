"""Benchmark the HTTP service against the bare generator forward pass, in the same run.

Publishes a real full-width residual generator (2 training iterations with the real VGG
loss, or ``--generator FILE``), measures ``stylize_tensor`` on it, then starts
``python -m service`` (uvicorn, 127.0.0.1 only) and measures ``POST /stylize`` with
one 512×512 JPEG: sequential latency, throughput with concurrent clients, and an
overload run with a small queue. Prints a Markdown table; writes JSON
(``bench/results/service-<device>.json``). Not a test.

    python bench/bench_service.py                       # CPU, 512²
    python bench/bench_service.py --compile             # + a torch.compile service run
    python bench/bench_service.py --device cuda --sizes 256,512 --clients 32
    python bench/bench_service.py --processes 1,2 --width 0.25 --sizes 128   # STYLIZE_WORKERS
    python bench/bench_service.py --device cuda --sizes 256,512 --gpu-codecs off,on
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from service_load import concurrent, percentile, sequential
from service_process import running_service
from service_tables import processes_table, table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_store import open_store  # noqa: E402
from stylenet import (  # noqa: E402
    TrainParams,
    generator_to_bytes,
    image_to_tensor,
    load_generator,
    samples,
    stylize_tensor,
    train,
)
from stylenet.inference import inference_dtype  # noqa: E402


def make_generator(path: Path | None, width: float = 1.0) -> bytes:
    """A real generator file: a residual net of ``width``, 2 iterations of real training."""
    if path is not None:
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        samples.export_photos(Path(folder), samples.PHOTOS[:2])
        style = samples.sample(samples.TEXTURE)
        params = TrainParams(
            iterations=2, image_size=64, style_size=64, batch_size=1, width=width, holdout=0
        )
        result = train(style, Path(folder), params, device=torch.device("cpu"))
        # float16 on disk, as the worker publishes; the service loads it as float32.
        return generator_to_bytes(
            result.generator, train_params=params.to_dict(), lossnet=result.lossnet, dtype="float16"
        )


def bare_forward(
    data: bytes,
    device: torch.device,
    size: int,
    batch: int,
    repeat: int,
    compile_: bool = False,
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """Time ``stylize_tensor`` on the published generator (what the service wraps)."""
    model, _ = load_generator(data, device=device)
    if compile_:
        model = torch.compile(model, dynamic=False)
    photo = samples.sample("astronaut").resize((size, size))
    x = image_to_tensor(photo).repeat(batch, 1, 1, 1).to(device)
    times = []
    for i in range(repeat + 2):
        started = time.perf_counter()
        stylize_tensor(x, model, dtype=dtype)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 2:  # warm-up (and compilation) excluded
            times.append(time.perf_counter() - started)
    mean = statistics.fmean(times)
    return {
        "size": size,
        "batch": batch,
        "compiled": compile_,
        "p50_ms": round(percentile(times, 50) * 1000, 1),
        "mean_ms": round(mean * 1000, 1),
        "images_per_s": round(batch / mean, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="512")
    parser.add_argument("--sequential", type=int, default=12)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--max-batch", type=int, help="default: the service's (CPU 1, CUDA 16)")
    parser.add_argument("--overload-clients", type=int, default=32)
    parser.add_argument("--overload-queue", type=int, default=4)
    parser.add_argument("--bare-repeat", type=int, default=6)
    parser.add_argument("--bare-batches", default="1", help="batch sizes of the bare forward")
    parser.add_argument("--codec-threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also run a torch.compile service")
    parser.add_argument("--generator", type=Path, help="use this generator file")
    parser.add_argument("--width", type=float, default=1.0, help="width of the made generator")
    parser.add_argument(
        "--processes",
        help="compare servers of these STYLIZE_WORKERS counts (e.g. 1,2) with --clients "
        "clients, --rounds times interleaved, instead of the default runs",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=("httpx", "lean"),
        default="lean",
        help="load generator of --processes runs: lean (raw asyncio connections, about "
        "as cheap as wrk) leaves the cores to the servers; httpx is what the default runs use",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="STYLIZE_TORCH_THREADS of every server (default: the service's, cores/processes)",
    )
    parser.add_argument(
        "--cpu-dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="CPU compute dtype of the service and the bare forward (STYLIZE_CPU_DTYPE)",
    )
    parser.add_argument(
        "--gpu-codecs",
        default="auto",
        help="STYLIZE_GPU_CODECS of the service runs; a list (off,on) runs each, same size, "
        "one after the other, to compare server CPU ms per image",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = inference_dtype(device, args.cpu_dtype)
    sizes = [int(s) for s in args.sizes.split(",")]
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)  # what the service's device executor uses
    data = make_generator(args.generator, args.width)
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    store_url = (work / "models").as_uri()
    store = open_store(store_url)
    buf = io.BytesIO()
    samples.sample(samples.TEXTURE).save(buf, "PNG")
    store.create(buf.getvalue(), name="bench", style_id="bench")
    store.publish("bench", data)
    log = work / "service.log"
    machine = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.machine(),
        "cpus": threads,
        "torch": torch.__version__,
        "dtype": str(dtype).removeprefix("torch."),
    }
    print(f"# {machine}; generator {len(data) / 1e6:.1f} MB; service log {log}", flush=True)
    result: dict[str, Any] = {"machine": machine, "runs": []}
    if args.processes:
        counts = [int(n) for n in args.processes.split(",")]
        result["processes"] = process_scaling(args, store_url, data, sizes, counts, log)
        out = args.out or REPO / "bench" / "results" / f"service-processes-{device.type}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {out}\n")
        print(processes_table(result["processes"]))
        return
    for size in sizes:
        jpeg_buf = io.BytesIO()
        samples.sample("astronaut").resize((size, size)).save(jpeg_buf, "JPEG", quality=90)
        jpeg = jpeg_buf.getvalue()
        modes = args.gpu_codecs.split(",")
        variants = [
            (name if len(modes) == 1 else f"{name}, codecs {mode}", compiled, mode)
            for name, compiled in [("eager", False)] + ([("compile", True)] if args.compile else [])
            for mode in modes
        ]
        for name, compiled, codecs in variants:
            run: dict[str, Any] = {"size": size, "variant": name, "gpu_codecs": codecs}
            run["bare_before"] = [
                bare_forward(data, device, size, int(b), args.bare_repeat, compiled, dtype)
                for b in args.bare_batches.split(",")
            ]
            print(f"{size}² {name} bare: {run['bare_before']}", flush=True)
            env = {
                "STYLIZE_WARM_SIDES": str(size),
                "STYLIZE_QUEUE_SIZE": "256",
                "STYLIZE_REQUEST_TIMEOUT_S": "600",
                "STYLIZE_TORCH_COMPILE": str(compiled).lower(),
                "STYLIZE_CODEC_THREADS": str(args.codec_threads),
                "STYLIZE_CPU_DTYPE": args.cpu_dtype,
                "STYLIZE_GPU_CODECS": codecs,
            }
            if args.max_batch:
                env["STYLIZE_MAX_BATCH_SIZE"] = str(args.max_batch)
            with running_service(store_url, args.device, env, log) as (base, pid):
                run["sequential"] = sequential(base, jpeg, args.sequential)
                print(f"  sequential: {run['sequential']}", flush=True)
                run["concurrent"] = concurrent(base, jpeg, args.clients, args.per_client, pid)
                print(f"  {args.clients} clients: {run['concurrent']}", flush=True)
            if name == variants[0][0] and size == sizes[0] and args.overload_clients:
                env |= {"STYLIZE_QUEUE_SIZE": str(args.overload_queue)}
                with running_service(store_url, args.device, env, log) as (base, _):
                    sequential(base, jpeg, 1)
                    run["overload"] = concurrent(base, jpeg, args.overload_clients, 2)
                    run["overload_queue"] = args.overload_queue
                    print(f"  overload: {run['overload']}", flush=True)
            # Measured again after: on a shared machine, drift shows up as a difference.
            run["bare_after"] = bare_forward(
                data, device, size, 1, args.bare_repeat, compiled, dtype
            )
            result["runs"].append(run)
    out = args.out or REPO / "bench" / "results" / f"service-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}\n")
    print(table(result["runs"]))


def process_scaling(
    args: argparse.Namespace,
    store_url: str,
    data: bytes,
    sizes: list[int],
    counts: list[int],
    log: Path,
) -> list[dict[str, Any]]:
    """Closed-loop throughput of servers with each process count, rounds interleaved."""
    runs: list[dict[str, Any]] = []
    for size in sizes:
        buf = io.BytesIO()
        samples.sample("astronaut").resize((size, size)).save(buf, "JPEG", quality=90)
        jpeg = buf.getvalue()
        env = {"STYLIZE_WARM_SIDES": str(size), "STYLIZE_QUEUE_SIZE": "256"}
        if args.torch_threads:
            env["STYLIZE_TORCH_THREADS"] = str(args.torch_threads)
        device = torch.device(args.device)
        dtype = inference_dtype(device, args.cpu_dtype)
        # The bare batched forward at the service's batch limit: what the server could reach.
        batch = args.max_batch or (16 if device.type == "cuda" else 1)
        bare = bare_forward(data, device, size, batch, args.bare_repeat, dtype=dtype)
        print(f"{size}² bare forward, batch {batch}: {bare}", flush=True)
        runs.append({"size": size, "processes": 0, "bare": bare})
        for round_ in range(args.rounds):
            for count in counts:
                with running_service(
                    store_url, args.device, env | {"STYLIZE_WORKERS": str(count)}, log
                ) as (base, pid):
                    sequential(base, jpeg, 2)  # every process's first shapes
                    run = concurrent(
                        base, jpeg, args.clients, args.per_client, pid, client=args.client
                    )
                run |= {"size": size, "processes": count, "round": round_}
                print(f"{size}² {count} process(es), round {round_}: {run}", flush=True)
                runs.append(run)
    return runs


if __name__ == "__main__":
    main()
