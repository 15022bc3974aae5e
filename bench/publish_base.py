"""Ship a trained base generator: copy it into ``stylenet/bases/`` and list it in the manifest.

``stylenet.warmstart.find_base`` serves the listed base whose generator shape matches a
run (``init`` ``auto``/``base``); one base per shape, so a new one replaces the old
entry of its shape. A joint base's γ/β table (``BASE.norms.safetensors`` beside it) is
shipped with it and listed with its own sha256. The manifest records the file's sha256
(verified on every load), the shape, how it was trained and what bench/adapt.py
measured for it.

    python bench/publish_base.py runs/base/residual-w0.5.safetensors \\
        --adapt bench/results/adapt-cpu-128.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from stylenet.model_file import read_info
from stylenet.warmstart import BASES_DIR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path, help="a file written by `stylize base train`")
    parser.add_argument("--adapt", type=Path, help="bench/adapt.py's JSON for this base")
    parser.add_argument("--dest", type=Path, default=BASES_DIR)
    args = parser.parse_args(argv)
    data = args.base.read_bytes()
    info = read_info(data)
    if info.metrics.get("kind") != "base":
        parser.error(f"{args.base} is not a base generator (its metrics say no kind 'base')")
    config = info.config.to_dict()
    name = f"{config['arch']}-w{config['width']:g}-{config['norm']}.safetensors"
    args.dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.base, args.dest / name)
    manifest_path = args.dest / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    bases = [b for b in manifest.get("bases", []) if b.get("config") != config]
    metrics = info.metrics
    entry = {
        "file": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "config": config,
        "dtype": info.dtype,
        "trained": {
            "base_params": metrics.get("base_params"),
            "outer_steps": metrics.get("outer_steps"),
            "paintings": len(metrics.get("paintings", [])),
            "seconds": metrics.get("seconds"),
            "device": metrics.get("device"),
        },
    }
    table = args.base.with_suffix(".norms.safetensors")
    if table.is_file():  # a joint base: its γ/β table, where new paintings start from
        norms = name.replace(".safetensors", ".norms.safetensors")
        shutil.copyfile(table, args.dest / norms)
        entry["norms"] = norms
        entry["norms_sha256"] = hashlib.sha256(table.read_bytes()).hexdigest()
    if args.adapt is not None:
        entry["adapt"] = str(args.adapt.name)
    bases.append(entry)
    manifest = {"format": "stylize-bases", "version": 1, "bases": bases}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{args.dest / name}: {entry['sha256']} ({config})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
