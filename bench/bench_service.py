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
import asyncio
import io
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its live children (``/proc``).

    The children are the HTTP processes of a ``STYLIZE_WORKERS`` > 1 server.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def running_service(
    store_url: str, device: str, env: dict[str, str], log: Path
) -> Iterator[tuple[str, int]]:
    """Run ``python -m service`` until the block exits; yield its base URL and pid once ready."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STYLIZE_")}
    full_env |= {
        "STYLIZE_MODEL_STORE": store_url,
        "STYLIZE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # not used here
        "STYLIZE_HOST": "127.0.0.1",
        "STYLIZE_PORT": str(port),
        "STYLIZE_DEVICE": device,
        "STYLIZE_WARM_STYLES": "bench",
        **env,
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=full_env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900  # compile warm-ups take minutes on a small CPU
        with httpx.Client(base_url=base, timeout=5) as probe:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"service exited:\n{log.read_text()[-3000:]}")
                try:
                    if probe.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("service did not become ready")
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


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
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get("content-length", "0")))
            results.append((int(lines[0].split()[1]), time.perf_counter() - started, headers))
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


def processes_table(runs: list[dict[str, Any]]) -> str:
    """Medians over rounds, and each count's throughput relative to the first count."""
    lines = [
        "| size | processes | img/s (median of rounds) | vs first | p50 ms | p99 ms | "
        "server CPU ms/img | client CPU ms/req | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sorted({r["size"] for r in runs}):
        base_ips = None
        bare = next((r["bare"] for r in runs if r["size"] == size and "bare" in r), None)
        if bare:
            lines.append(
                f"| {size} | bare forward, batch {bare['batch']} | {bare['images_per_s']} | | "
                f"| | | | |"
            )
        for count in dict.fromkeys(
            r["processes"] for r in runs if r["size"] == size and "bare" not in r
        ):
            mine = [r for r in runs if r["size"] == size and r["processes"] == count]
            ips = statistics.median(r["images_per_s"] for r in mine)
            base_ips = base_ips or ips
            lines.append(
                f"| {size} | {count} | {ips:.1f} | {ips / base_ips:.2f}× | "
                f"{statistics.median(r['accepted_p50_ms'] for r in mine):.1f} | "
                f"{statistics.median(r['accepted_p99_ms'] for r in mine):.1f} | "
                f"{statistics.median(r['server_cpu_ms_per_ok'] for r in mine)} | "
                f"{statistics.median(r.get('client_cpu_ms_per_request', 0) for r in mine)} | "
                f"{sum(r['other_errors'] + r['rejected_429'] for r in mine)} |"
            )
    return "\n".join(lines)


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| size | variant | bare fwd p50 ms (before/after) | e2e p50 ms | e2e p95 ms | "
        "p50 ratio | bare img/s | e2e img/s (clients) | ratio | mean batch | "
        "server CPU ms/img | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        before = run["bare_before"][0]
        bare_p50 = (before["p50_ms"] + run["bare_after"]["p50_ms"]) / 2
        bare_ips = (before["images_per_s"] + run["bare_after"]["images_per_s"]) / 2
        seq, con = run["sequential"], run["concurrent"]
        lines.append(
            f"| {run['size']} | {run['variant']} | {before['p50_ms']} / "
            f"{run['bare_after']['p50_ms']} | {seq['p50_ms']} | {seq['p95_ms']} | "
            f"{seq['p50_ms'] / bare_p50:.2f}× | {bare_ips:.2f} | {con['images_per_s']} "
            f"({con['clients']}) | {con['images_per_s'] / bare_ips:.2f}× | {con['mean_batch']} | "
            f"{con.get('server_cpu_ms_per_ok', '')} | "
            f"{seq['errors'] + con['other_errors'] + con['rejected_429']} |"
        )
    for run in runs:
        if "overload" in run:
            o = run["overload"]
            lines += [
                "",
                "| overload: clients × 2 req | queue | ok | 429 | other | 429 p50 / p99 ms | "
                "accepted p50 / p99 ms |",
                "|---|---|---|---|---|---|---|",
                f"| {o['clients']} | {run.get('overload_queue', '')} | {o['ok']} | "
                f"{o['rejected_429']} | {o['other_errors']} | {o['rejected_p50_ms']} / "
                f"{o['rejected_p99_ms']} | {o['accepted_p50_ms']} / {o['accepted_p99_ms']} |",
            ]
    for run in runs:
        if len(run["bare_before"]) > 1:
            lines += ["", "| size | bare batch | ms/batch | img/s |", "|---|---|---|---|"]
            lines += [
                f"| {b['size']} | {b['batch']} | {b['mean_ms']} | {b['images_per_s']} |"
                for b in run["bare_before"]
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
