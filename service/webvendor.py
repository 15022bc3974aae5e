"""onnxruntime-web for the page's "Stylize on this device", fetched at set-up, never committed.

``python -m service.webvendor`` (``make setup`` runs it) downloads one pinned release of
the npm package ``onnxruntime-web`` from the npm registry, checks the tarball against the
registry's pinned sha512 ``integrity``, and unpacks the few files the page uses (the WASM
and WebGPU builds, ~41 MB) into ``service/static/vendor/onnxruntime-web/`` (git-ignored),
which the service serves under ``/static/vendor/``. No CDN: the browser loads them from
this service. Where the folder is missing (offline set-up, the Docker image), the page
hides the button and stylizing on the server works as before.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

NAME = "onnxruntime-web"
VERSION = "1.30.0"
#: ``dist.integrity`` of that version in the npm registry (``npm view onnxruntime-web@1.30.0``).
INTEGRITY = (
    "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1Sig"
    "qR4CXAfKYQ=="
)
REGISTRY = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org").rstrip("/")
TARBALL = f"{REGISTRY}/{NAME}/-/{NAME}-{VERSION}.tgz"
#: What the page loads: each build's entry module, its WASM glue and binary. The WASM build
#: (``ort.wasm.min.mjs``) runs everywhere; the WebGPU one where the browser has an adapter.
FILES = (
    "package.json",
    "dist/ort.wasm.min.mjs",
    "dist/ort-wasm-simd-threaded.mjs",
    "dist/ort-wasm-simd-threaded.wasm",
    "dist/ort.webgpu.min.mjs",
    "dist/ort-wasm-simd-threaded.asyncify.mjs",
    "dist/ort-wasm-simd-threaded.asyncify.wasm",
)
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor" / NAME
STAMP = f".installed-{VERSION}"


def installed(folder: Path = VENDOR_DIR) -> bool:
    """Whether this version's files are in ``folder``."""
    return (folder / STAMP).is_file()


def check_integrity(data: bytes, integrity: str = INTEGRITY) -> None:
    """Raise ``ValueError`` unless ``data`` has the npm ``integrity`` (``sha512-<base64>``)."""
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise ValueError(f"{NAME}-{VERSION}.tgz: {algorithm} is {digest}, expected {expected}")


def install(folder: Path = VENDOR_DIR, *, tarball: bytes | None = None) -> Path:
    """Fetch (unless ``tarball`` is given), verify and unpack the files into ``folder``.

    Atomic: the files go to a temporary folder beside it, renamed into place at the end.
    """
    if tarball is None:
        with urllib.request.urlopen(TARBALL, timeout=120) as answer:
            tarball = answer.read()
    check_integrity(tarball)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=folder.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide it from a service running as another user
    try:
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for name in FILES:
                member = archive.getmember(f"package/{name}")
                source = archive.extractfile(member)
                if source is None:
                    raise ValueError(f"{name} is not a file in the tarball")
                (staging / Path(name).name).write_bytes(source.read())
        (staging / STAMP).write_text(json.dumps({"version": VERSION, "integrity": INTEGRITY}))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def main() -> int:
    """Install unless present; exit 1 (with the reason) when it cannot."""
    if installed():
        (VENDOR_DIR / STAMP).touch()  # newer than this file: make asks no more
        print(f"{NAME} {VERSION}: {VENDOR_DIR} (present)")
        return 0
    try:
        install()
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        print(
            f"warning: {NAME} {VERSION} not installed ({exc}); the page's "
            "'Stylize on this device' stays hidden",
            file=sys.stderr,
        )
        return 1
    print(f"{NAME} {VERSION}: {VENDOR_DIR} (verified {INTEGRITY[:20]}…)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
