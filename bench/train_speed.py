"""Training speed: our trainer's step against a pytorch/examples-style loop, side by side.

Both train Johnson et al.'s residual transformer network against VGG16 features (content
relu2_2; style Grams at relu1_2, relu2_2, relu3_3, relu4_3) with Adam, on the same random
256-px batches of 4. The reference is written here in the style of pytorch/examples'
``fast_neural_style`` (not copied): every step runs the whole VGG16 on the output and
on the content batch, NCHW float32. Ours is :class:`stylenet.step.TrainStep` with the
options the trainer picks for the device (and variants of them).

Variants are timed interleaved (round r times every variant once) so that other load
on the machine hits them alike; medians are reported with the load average.

    OMP_NUM_THREADS=2 python bench/train_speed.py                 # 256 px, batch 4
    python bench/train_speed.py --size 128 --repeats 3 --compile  # + torch.compile
    python bench/train_speed.py --device cuda --compile           # on a GPU
    python bench/train_speed.py --device cuda --recipe-run data/content-320  # + whole runs
    python bench/train_speed.py --curves data/content      # loss curves: fp32 NCHW/CL, bf16

Prints a table and writes JSON (``--out``, default bench/results/train-speed-<device>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylenet import TrainParams, build_generator
from stylenet.cost import step_flops
from stylenet.inference import cpu_has_native_bf16
from stylenet.losses import gram_matrix
from stylenet.step import StepOptions, TrainStep
from stylenet.train import build_loss

# --- the reference: a pytorch/examples-style fast_neural_style loop -------------------------


class RefConv(nn.Module):
    """Reflection padding + convolution."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class RefResidual(nn.Module):
    """conv-IN-ReLU-conv-IN plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.in1 = (
            RefConv(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )
        self.conv2, self.in2 = (
            RefConv(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class RefUpsampleConv(RefConv):
    """Nearest ×2 upsampling, then a convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class RefTransformerNet(nn.Module):
    """Johnson et al.'s image transformation network, as pytorch/examples writes it."""

    def __init__(self) -> None:
        super().__init__()
        norm = nn.InstanceNorm2d
        self.down = nn.ModuleList(
            [RefConv(3, 32, 9), RefConv(32, 64, 3, 2), RefConv(64, 128, 3, 2)]
        )
        self.down_norms = nn.ModuleList(
            [norm(32, affine=True), norm(64, affine=True), norm(128, affine=True)]
        )
        self.res = nn.Sequential(*(RefResidual(128) for _ in range(5)))
        self.up = nn.ModuleList([RefUpsampleConv(128, 64, 3), RefUpsampleConv(64, 32, 3)])
        self.up_norms = nn.ModuleList([norm(64, affine=True), norm(32, affine=True)])
        self.out = RefConv(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.down, self.down_norms, strict=True):
            x = F.relu(norm(conv(x)))
        x = self.res(x)
        for conv, norm in zip(self.up, self.up_norms, strict=True):
            x = F.relu(norm(conv(x)))
        return self.out(x)


class RefVgg16(nn.Module):
    """VGG16 features in four slices ending at relu1_2, relu2_2, relu3_3, relu4_3."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        plan = [[64, 64], ["M", 128, 128], ["M", 256, 256, 256], ["M", 512, 512, 512]]
        self.slices = nn.ModuleList()
        names = iter(n for n in state if n.endswith(".weight"))
        cin = 3
        for block in plan:
            layers: list[nn.Module] = []
            for item in block:
                if item == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                    continue
                conv = nn.Conv2d(cin, int(item), 3, padding=1)
                name = next(names)
                conv.weight.data.copy_(state[name])
                conv.bias.data.copy_(state[name.replace(".weight", ".bias")])
                layers += [conv, nn.ReLU(inplace=True)]
                cin = int(item)
            self.slices.append(nn.Sequential(*layers))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for part in self.slices:
            x = part(x)
            out.append(x)
        return out


def normalize_batch(x: torch.Tensor) -> torch.Tensor:
    """0–255 RGB to ImageNet-normalized input, as pytorch/examples does."""
    mean = x.new_tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = x.new_tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
    return (x / 255.0 - mean) / std


class ReferenceStep:
    """One step of the pytorch/examples-style loop (content_weight 1e5, style_weight 1e10)."""

    def __init__(
        self, vgg_state: dict[str, torch.Tensor], style: torch.Tensor, device: torch.device
    ) -> None:
        torch.manual_seed(0)
        self.net = RefTransformerNet().to(device)
        self.vgg = RefVgg16(vgg_state).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), 1e-3)
        with torch.no_grad():
            self.gram_style = [gram_matrix(f) for f in self.vgg(normalize_batch(style.to(device)))]
        self.device = device

    def __call__(self, batch: torch.Tensor, lr: float) -> torch.Tensor:
        x = batch.to(self.device)
        self.optimizer.zero_grad()
        y = self.net(x)
        features_y = self.vgg(normalize_batch(y))
        features_x = self.vgg(normalize_batch(x))
        content = 1e5 * F.mse_loss(features_y[1], features_x[1])
        style = 1e10 * sum(
            F.mse_loss(gram_matrix(fy), gs.expand(len(x), -1, -1))
            for fy, gs in zip(features_y, self.gram_style, strict=True)
        )
        total = content + style
        total.backward()
        self.optimizer.step()
        return total


def reference_flops(vgg_state: dict[str, torch.Tensor], size: int, batch: int) -> float:
    """FLOPs of one reference step (counted on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        state = {k: torch.empty_like(v, device="meta") for k, v in vgg_state.items()}
        step = ReferenceStep(state, torch.empty(1, 3, size, size), torch.device("meta"))
        with FlopCounterMode(display=False) as counter:
            step(torch.empty(batch, 3, size, size), 1e-3)
    return float(counter.get_total_flops())


# --- the benchmark -----------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def our_step(
    params: TrainParams, device: torch.device, options: StepOptions, style: torch.Tensor
) -> TrainStep:
    """Our trainer's step for ``params`` with ``options`` (the trainer's own classes)."""
    loss = build_loss(params, device, None)
    loss.set_style(style.to(device))
    torch.manual_seed(0)
    generator = build_generator(params.generator_config).to(device).train()
    optimizer = torch.optim.Adam(generator.parameters(), lr=params.lr)
    return TrainStep(generator, loss, optimizer, device, options)


def variant_options(device: torch.device) -> dict[str, StepOptions]:
    """The step options each variant name stands for on ``device``."""
    best = StepOptions.for_device(device)
    return {
        "ours": best,
        "ours-nchw": replace(
            best,
            generator_channels_last=False,
            output_conv_channels_last=False,
            lossnet_channels_last=False,
        ),
        "ours+cl": replace(best, generator_channels_last=True, lossnet_channels_last=True),
        "ours+fp32": replace(best, autocast=None),
        "ours+bf16": replace(best, autocast=torch.bfloat16),
        "ours+compile": replace(best, compile=True),
    }


def recipe_runs(
    device: torch.device, content: Path, iterations: int, names: list[str]
) -> list[dict[str, Any]]:
    """Seconds of whole default-recipe trainings (what a user waits for), per variant."""
    from stylenet import train

    style = Path(__file__).resolve().parents[1] / "demo_styles/scream/style.jpg"
    params = TrainParams(iterations=iterations, yardstick_steps=0, checkpoint_every=0)
    rows = []
    for name in names:
        options = variant_options(device)[name]
        started = time.perf_counter()
        result = train(style, content, params, device=device, options=options)
        wall = time.perf_counter() - started
        metrics = result.metrics
        row = {
            "variant": name,
            "options": options.describe(),
            "iterations": iterations,
            "wall_s": round(wall, 1),
            "iterations_per_s": round(metrics["images_per_s"] / params.batch_size, 2),
            "final_train_loss": metrics["final_train_loss"],
            "holdout_loss": metrics["holdout_loss"],
        }
        print(
            f"recipe {name:<14} {iterations} iterations in {wall:.1f} s "
            f"({row['iterations_per_s']} it/s), held-out loss {metrics['holdout_loss']}"
        )
        rows.append(row)
    return rows


def loss_curves(
    content: Path, iterations: int, size: int, names: list[str]
) -> dict[str, dict[str, Any]]:
    """Train the same small run once per variant; return each one's loss curve.

    Same seed, crops and initialization: only how the step is computed differs, so the
    curves show whether a variant changes the result beyond float noise.
    """
    from stylenet import train

    style = Path(__file__).resolve().parents[1] / "demo_styles/scream/style.jpg"
    params = TrainParams(
        iterations=iterations,
        image_size=size,
        style_size=size,
        batch_size=2,
        width=0.5,
        holdout=2,
        progress_every=10,
        yardstick_steps=0,
        checkpoint_every=0,
    )
    curves: dict[str, dict[str, Any]] = {}
    for name in names:
        points: list[tuple[int, float]] = []
        started = time.perf_counter()
        result = train(
            style,
            content,
            params,
            options=variant_options(torch.device("cpu"))[name],
            on_progress=lambda p, points=points: points.append((p.iteration, p.losses["total"])),
        )
        curves[name] = {
            "seconds": round(time.perf_counter() - started, 1),
            "total_loss": points,
            "holdout_loss": result.metrics["holdout_loss"],
        }
    print(f"loss curves, {iterations} iterations at {size} px, batch 2, width 0.5 (total loss)")
    print("iteration " + "".join(f"{n:>14}" for n in names))
    for index, (iteration, _) in enumerate(curves[names[0]]["total_loss"]):
        if iteration % 50 == 0 or iteration == iterations:
            row = "".join(f"{curves[n]['total_loss'][index][1]:>14.4f}" for n in names)
            print(f"{iteration:>9} {row}")
    held = "".join(f"{curves[n]['holdout_loss']['total']:>14.4f}" for n in names)
    print(f"{'held-out':>9} {held}")
    return curves


def _timed(step: Any, batch: torch.Tensor, device: torch.device, steps: int) -> float:
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        result = step(batch, 1e-3)
    float((result.total if hasattr(result, "total") else result).detach())
    _sync(device)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--variants", default="ours,ours-nchw,ours+cl,reference")
    parser.add_argument(
        "--recipe-run",
        type=Path,
        metavar="CONTENT_DIR",
        help="also time whole trainings of the default recipe (--recipe-iterations) on "
        "these photos, once per --recipe-variants",
    )
    parser.add_argument("--recipe-iterations", type=int, default=2000)
    parser.add_argument(
        "--curves",
        type=Path,
        metavar="CONTENT_DIR",
        help="only train small runs per --curve-variants and print their loss curves",
    )
    parser.add_argument("--curve-iterations", type=int, default=300)
    parser.add_argument("--curve-size", type=int, default=32)
    parser.add_argument("--curve-variants", default="ours-nchw,ours,ours+bf16")
    parser.add_argument("--recipe-variants", default="ours,ours+cl,ours+compile")
    parser.add_argument(
        "--compile", action="store_true", help="add ours+compile (compile time reported)"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="add ours+bf16 (needs AVX512-BF16/AMX to pay on CPU)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.curves:
        names = [n for n in args.curve_variants.split(",") if n]
        curves = loss_curves(args.curves, args.curve_iterations, args.curve_size, names)
        out = args.out or Path("bench/results/train-curves-cpu.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(curves, indent=2))
        print(f"wrote {out}")
        return
    params = TrainParams(
        preset="johnson", image_size=args.size, style_size=args.size, batch_size=args.batch_size
    )
    torch.manual_seed(0)
    batch = (torch.rand(args.batch_size, 3, args.size, args.size) * 255).to(device)
    style = torch.rand(1, 3, args.size, args.size) * 255
    options = variant_options(device)
    names = [n for n in args.variants.split(",") if n]
    if args.bf16:
        names.append("ours+bf16")
    if args.compile:
        names.append("ours+compile")
    unknown = [n for n in names if n != "reference" and n not in options]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: reference, {', '.join(options)}")
    loss = build_loss(params, device, None)
    vgg_state = {k: v.cpu() for k, v in loss.vgg.layers.state_dict().items()}
    steps: dict[str, Any] = {}
    first: dict[str, float] = {}
    for name in names:
        steps[name] = (
            ReferenceStep(vgg_state, style, device)
            if name == "reference"
            else our_step(params, device, options[name], style)
        )
        # The first step includes allocation, oneDNN primitive creation and any compile.
        first[name] = _timed(steps[name], batch, device, 1)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            times[name].append(_timed(steps[name], batch, device, args.steps))
    load_after = os.getloadavg()
    ours_flops = step_flops(params)
    ref_flops = reference_flops(vgg_state, args.size, args.batch_size)
    ref_median = statistics.median(times["reference"]) if "reference" in times else None
    # Each round's ratio to the reference of the same round: load that comes and goes
    # hits both sides of a ratio alike, so its median is steadier than a ratio of medians.
    ref_times = times.get("reference")
    rows = []
    for name in names:
        median = statistics.median(times[name])
        flops = ref_flops if name == "reference" else ours_flops
        rows.append(
            {
                "variant": name,
                "options": None if name == "reference" else options[name].describe(),
                "s_per_it_median": round(median, 4),
                "s_per_it_all": [round(t, 4) for t in times[name]],
                "it_per_s": round(1 / median, 4),
                "speedup_vs_reference": round(ref_median / median, 3) if ref_median else None,
                "speedup_per_round_median": round(
                    statistics.median(r / t for r, t in zip(ref_times, times[name], strict=True)),
                    3,
                )
                if ref_times
                else None,
                "first_step_s": round(first[name], 3),
                "gflop_per_step": round(flops / 1e9, 1),
                "gflop_per_s": round(flops / 1e9 / median, 1),
            }
        )
    threads = torch.get_num_threads()
    print(
        f"{params.image_size} px, batch {params.batch_size}, {device}, {threads} threads, load "
        f"average {load_before[0]:.2f} -> {load_after[0]:.2f}, "
        f"{args.repeats}×{args.steps} steps interleaved"
    )
    header = ("variant", "s/it", "it/s", "vs ref", "by round", "first s", "GFLOP/it", "GFLOP/s")
    print(f"{header[0]:<14}" + "".join(f"{h:>9}" for h in header[1:]))
    for row in rows:
        print(
            f"{row['variant']:<14}{row['s_per_it_median']:>9.3f}{row['it_per_s']:>9.3f}"
            f"{row['speedup_vs_reference'] or 0:>9.2f}{row['speedup_per_round_median'] or 0:>9.2f}"
            f"{row['first_step_s']:>9.2f}"
            f"{row['gflop_per_step']:>9.1f}{row['gflop_per_s']:>9.1f}"
        )
    out = args.out or Path(f"bench/results/train-speed-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "size": args.size,
        "batch_size": args.batch_size,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average_before_after": [load_before, load_after],
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "rows": rows,
    }
    if args.recipe_run:
        names = [n for n in args.recipe_variants.split(",") if n]
        report["recipe_runs"] = recipe_runs(device, args.recipe_run, args.recipe_iterations, names)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
