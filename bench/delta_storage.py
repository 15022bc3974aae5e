"""Bytes per style in the model store: full files against deltas over a parent (issue 27).

Publishes a parent style (a real generator, ``--generator``, float16 as the worker
publishes) into a temporary file store, then ``--styles`` γ/β-only adaptations of it
started from that style (``metrics.init`` of kind ``style``: stored as what differs), and
one style whose every tensor moved (stored in full). Reports the bytes each takes in the
store, the bytes on disk of the whole store, and the median time of ``open_weights`` for a
full file and for a delta (rebuilt from its parent and verified). Prints a Markdown table,
writes ``bench/results/delta-storage.json``. Not a test.

    OMP_NUM_THREADS=1 .venv/bin/python bench/delta_storage.py --styles 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import machine  # noqa: E402

from model_store import ModelStore, open_store  # noqa: E402
from stylenet import generator_to_bytes, load_generator  # noqa: E402
from stylenet.multistyle import norm_parameter_names  # noqa: E402

DEFAULT_GENERATOR = ROOT / "demo_styles" / "scream" / "generator.safetensors"


def adapted(base: bytes, seed: int, init: dict, *, everything: bool = False) -> bytes:
    """Return ``base`` with seeded new γ/β (every tensor moved if ``everything``), float16."""
    model, info = load_generator(base)
    names = set(norm_parameter_names(model))
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if everything or name in names:
                param.add_(0.05 * torch.randn(param.shape, generator=noise))
    return generator_to_bytes(
        model, train_params=info.train_params, metrics={"init": init}, dtype="float16"
    )


def read_time(store: ModelStore, style_id: str, repeats: int) -> float:
    """Median seconds of ``open_weights`` (verified; a delta is rebuilt)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        store.open_weights(style_id)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generator", type=Path, default=DEFAULT_GENERATOR)
    parser.add_argument("--styles", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    png = (ROOT / "demo_styles" / "scream" / "style.jpg").read_bytes()
    model, info = load_generator(args.generator.read_bytes())
    parent = generator_to_bytes(model, train_params=info.train_params, dtype="float16")
    init = {"kind": "style", "style_id": "parent", "version": 1}
    init["sha256"] = hashlib.sha256(parent).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        store = open_store(root.as_uri())
        store.create(png, name="parent", style_id="parent")
        store.publish("parent", parent)
        for index in range(args.styles):
            sid = f"s{index}"
            store.create(png, name=sid, style_id=sid)
            store.publish(sid, adapted(parent, index, init), metrics={"init": init})
        store.create(png, name="moved", style_id="moved")
        store.publish("moved", adapted(parent, 999, init, everything=True), metrics={"init": init})
        delta = store.get("s0").version_info()
        moved = store.get("moved").version_info()
        on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        images = len(png) * (args.styles + 2)
        rows = {
            "full_file_bytes": delta.size,
            "gamma_beta_delta_bytes": delta.stored_size,
            "all_tensors_moved_bytes": moved.stored_size,
            "stored_as_delta": sum(
                store.get(f"s{i}").version_info().delta is not None for i in range(args.styles)
            ),
            "styles": args.styles,
            "store_weights_bytes_on_disk": on_disk - images,
            "store_weights_bytes_if_full": delta.size * (args.styles + 2),
            "read_full_s": read_time(store, "parent", args.repeats),
            "read_delta_s": read_time(store, "s0", args.repeats),
        }
    print(f"generator: {args.generator.relative_to(ROOT)} (float16)")
    print("| what | bytes per style |\n|---|---:|")
    print(f"| full file | {rows['full_file_bytes']:,} |")
    print(f"| γ/β-only adaptation, stored as a delta | {rows['gamma_beta_delta_bytes']:,} |")
    print(f"| every tensor moved (stored in full) | {rows['all_tensors_moved_bytes']:,} |")
    print(
        f"\n{rows['styles']} γ/β styles + parent + moved: weights on disk "
        f"{rows['store_weights_bytes_on_disk']:,} B (all full: "
        f"{rows['store_weights_bytes_if_full']:,} B); open_weights median "
        f"{rows['read_full_s'] * 1e3:.1f} ms full, {rows['read_delta_s'] * 1e3:.1f} ms delta"
    )
    out = ROOT / "bench" / "results" / "delta-storage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "results": rows}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
