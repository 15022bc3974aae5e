"""Benchmark the CPU backends of a generator: torch against ONNX Runtime, float32 and int8.

For each size (256², 512², 1024² by default) it times, interleaved so that load from
other processes falls on all alike:

* ``torch``: the service's CPU path (bf16 autocast where the CPU has bf16 instructions,
  as ``STYLIZE_CPU_DTYPE=auto`` does; float32 elsewhere);
* ``ort-fp32``: the style's ONNX export (``stylenet.onnx_export``) on ONNX Runtime;
* ``ort-int8``: that export with ``onnxruntime.quantization.quantize_dynamic`` int8 weights;

and reports img/s (batch 1) and p50 latency, each output's mean and max difference from
float32 (0–255 scale) on a real photo, and with ``--score`` the quality yardstick's r of
float32 and int8 on held-out photos (fewer steps and photos than the reference: the
figures compare the two, they are not the style's score).

    .venv/bin/python bench/onnx_backend.py
    .venv/bin/python bench/onnx_backend.py --model demo_styles/scream/generator.safetensors \
        --sizes 256 512 --repeat 5 --score
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from machine import machine
from torch import nn

from stylenet import load_generator, samples
from stylenet.inference import inference_dtype, stylize_tensor
from stylenet.onnx_export import export_onnx
from stylenet.ort_backend import OrtGenerator, quantize_int8, stylize_tensor_ort
from stylenet.pixels import image_to_tensor

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "demo_styles" / "scream" / "generator.safetensors"


def _machine() -> dict[str, Any]:
    return machine(
        onnxruntime=onnxruntime.__version__, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY")
    )


class _OrtModule(nn.Module):
    """An ONNX Runtime session as a module, for the yardstick (which calls ``generator(x)``)."""

    def __init__(self, runner: OrtGenerator) -> None:
        super().__init__()
        self.runner = runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runner(x.detach().float().cpu().numpy()))


def time_sizes(
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]], sizes: list[int], repeat: int
) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size)) * 255
        for run in variants.values():
            run(image)  # warm-up: allocations, lazy kernel set-up
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(repeat):
            for name, run in variants.items():
                started = time.perf_counter()
                run(image)
                times[name].append(time.perf_counter() - started)
        for name, values in times.items():
            rows.append(
                {
                    "backend": name,
                    "size": size,
                    "p50_s": statistics.median(values),
                    "img_per_s": len(values) / sum(values),
                    "runs": len(values),
                }
            )
            print(f"  {name:9s} {size:5d}²  p50 {statistics.median(values) * 1000:7.0f} ms")
    return rows


def differences(
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    reference: Callable[[torch.Tensor], torch.Tensor],
    side: int,
) -> dict[str, dict[str, float]]:
    photo = samples.sample("astronaut").resize((side, side))
    image = image_to_tensor(photo)
    expected = reference(image)
    return {
        name: {
            "mean_abs": float((run(image) - expected).abs().mean()),
            "max_abs": float((run(image) - expected).abs().max()),
        }
        for name, run in variants.items()
    }


def scores(generators: dict[str, nn.Module], info: Any, photos: int, steps: int) -> dict[str, Any]:
    from stylenet.data import find_images, split_content
    from stylenet.params import TrainParams
    from stylenet.score import score_generator

    content = Path(os.environ.get("STYLIZE_CONTENT_DIR") or Path.home() / ".cache/stylize/content")
    held = split_content(find_images(content), 2).held[:photos]
    style = ROOT / "demo_styles" / "scream" / "style.jpg"
    params = TrainParams.from_dict({**info.train_params, "yardstick_steps": steps})
    from stylenet.score import TrajectoryCache

    cache = TrajectoryCache(Path("bench/results/trajectories"))
    out = {}
    for name, generator in generators.items():
        report = score_generator(
            generator, style, held, params, verified=True, trajectory_cache=cache
        )
        out[name] = {"r_mean": report["r_mean"], "photos": len(held), "steps": steps}
        print(f"  score {name}: r = {report['r_mean']} ({len(held)} photos, {steps} steps)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--score", action="store_true", help="also the yardstick's r")
    parser.add_argument("--score-photos", type=int, default=2)
    parser.add_argument("--score-steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/onnx_backend.json")
    args = parser.parse_args()

    data = args.model.read_bytes()
    model, info = load_generator(data)
    threads = torch.get_num_threads()
    dtype = inference_dtype(torch.device("cpu"), "auto")
    exported = export_onnx(data).data
    fp32 = OrtGenerator(exported, threads=threads)
    int8 = OrtGenerator(quantize_int8(exported), threads=threads)
    torch_name = f"torch-{str(dtype).removeprefix('torch.').replace('bfloat16', 'bf16')}"
    variants = {
        torch_name: lambda x: stylize_tensor(x, model, dtype=dtype),
        "ort-fp32": lambda x: stylize_tensor_ort(x, fp32),
        "ort-int8": lambda x: stylize_tensor_ort(x, int8),
    }
    started = _machine()
    print(f"{started['cpu']}, {started['cores']} cores, load {started['load_average']}")
    rows = time_sizes(variants, args.sizes, args.repeat)
    diff = differences(variants, lambda x: stylize_tensor(x, model, dtype=torch.float32), 512)
    report: dict[str, Any] = {
        "model": str(args.model),
        "machine": started,
        "load_average_after": os.getloadavg(),
        "rows": rows,
        "difference_from_float32_at_512": diff,
        "onnx_bytes": {"fp32": len(exported)},
    }
    if args.score:
        report["score"] = scores(
            {"torch-fp32": model, "ort-int8": _OrtModule(int8)},
            info,
            args.score_photos,
            args.score_steps,
        )
    print()
    print(f"| backend | {' | '.join(f'{s}² img/s | {s}² p50' for s in args.sizes)} |")
    print(f"|---|{'---|---|' * len(args.sizes)}")
    for name in variants:
        cells = []
        for size in args.sizes:
            (row,) = [r for r in rows if r["backend"] == name and r["size"] == size]
            cells += [f"{row['img_per_s']:.2f}", f"{row['p50_s'] * 1000:.0f} ms"]
        print(f"| {name} | {' | '.join(cells)} |")
    print()
    for name, d in diff.items():
        print(f"{name}: mean |Δ| {d['mean_abs']:.3f}, max |Δ| {d['max_abs']:.1f} of 255 vs fp32")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
