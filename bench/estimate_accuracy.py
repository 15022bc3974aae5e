"""How close the training-time estimate comes to the real run, on this machine.

The worker calibrates its device at start (``worker.speed.measure``: a few timed steps
and the run overhead) and the API prices a training from that curve
(``stylenet.cost.estimate_seconds``). This bench does the same in one process, then
trains each shape for real and prints estimate vs actual (a table, and JSON). It is the
figure docs/TRAINING.md quotes; no test asserts it (a busy machine would fail such a test).

    python bench/estimate_accuracy.py --content ~/.cache/stylize/content \\
        --runs 32x2x200,64x4x60,128x4x20 --out bench/results/estimate.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from PIL import Image

from stylenet import TrainParams, train
from stylenet.cost import estimate_seconds
from stylenet.devices import pick_device
from worker.settings import WorkerSettings
from worker.speed import JOB_OVERHEAD_S, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--content", type=Path, required=True)
    parser.add_argument(
        "--runs", default="32x2x200,64x4x60,128x4x20", help="SIZExBATCHxITERATIONS,…"
    )
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    settings = WorkerSettings(content_dir=args.content, calibrate=False)
    began = time.monotonic()
    speed = measure(device, settings.shapes(), settings)
    calibration_s = time.monotonic() - began
    rows = []
    for run in args.runs.split(","):
        size, batch, iterations = (int(v) for v in run.split("x"))
        params = TrainParams(
            iterations=iterations,
            image_size=size,
            style_size=size,
            batch_size=batch,
            width=args.width,
            holdout=1,
            yardstick_steps=0,
            checkpoint_every=0,
        )
        estimate = estimate_seconds(params, speed)
        started = time.monotonic()
        train(Image.new("RGB", (size, size), (90, 60, 30)), args.content, params, device=device)
        actual = time.monotonic() - started + JOB_OVERHEAD_S
        rows.append(
            {
                "run": run,
                "estimate_s": round(estimate, 1),
                "actual_s": round(actual, 1),
                "ratio": round(estimate / actual, 3),
            }
        )
        print(f"{run}: estimated {estimate:.1f} s, took {actual:.1f} s")
    print("\n| size × batch × iterations | estimate | actual | estimate / actual |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['run']} | {row['estimate_s']} s | {row['actual_s']} s | {row['ratio']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "device": str(device),
                "calibration_s": round(calibration_s, 1),
                "speed": speed.to_dict(),
                "runs": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
