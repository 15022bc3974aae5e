"""A Docker engine and the Compose v2 plugin for the deployment test, set up if missing.

As root on Debian (the CI machines), it installs what is missing from the machine's own
apt sources, as a user would: the engine from Debian's ``docker.io`` and ``dockerd``
started in the background. Debian 12 ships only Compose v1 (Python), so the v2 plugin (a
static Go binary that needs only libc) comes from Debian 13's ``docker-compose`` package,
and BuildKit's ``buildx`` from its ``docker-buildx``; each is checked against its pinned
SHA-256 (or, if that version left the archive, against the suite's ``Packages`` index,
verified with Debian's archive keyring).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
#: The CLI plugins from Debian 13 (trixie): ``docker <name>`` -> (pool path, SHA-256).
PLUGIN_SUITE = "trixie"
PLUGINS = {
    "compose": (
        "pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb",
        "47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea",
    ),
    # BuildKit builds (the legacy builder also builds stages the target does not need).
    "buildx": (
        "pool/main/d/docker-buildx/docker-buildx_0.13.1+ds1-3_amd64.deb",
        "fcf8c48204d1603c8f209451d7827eb91bf30759578baf7704e9e1a87e5f1d7f",
    ),
}
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DOCKERD_LOG = Path(tempfile.gettempdir()) / "stylize-dockerd.log"


class EngineUnavailable(RuntimeError):
    """No Docker engine can be used or set up here (the message says why)."""


def run(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; raise with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    return done


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return (
        run("docker", "info", "--format", "{{.ServerVersion}}", timeout=30, check=False).returncode
        == 0
    )


def _plugin_works(name: str) -> bool:
    done = run("docker", name, "version", timeout=30, check=False)
    if name == "compose":  # v1 (`docker-compose`) is not a plugin; v2 prints its version
        return done.returncode == 0 and re.search(r"version v?[2-9]", done.stdout) is not None
    return done.returncode == 0


def apt_install(*packages: str) -> None:
    """Install Debian packages from the machine's apt sources (as root)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, timeout=900)


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def _verified_packages_sha(pool_path: str) -> str | None:
    """Return the SHA-256 the signed ``Packages`` index of the suite gives ``pool_path``."""
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp, "InRelease")
        release.write_bytes(_download(f"{MIRROR}/dists/{PLUGIN_SUITE}/InRelease"))
        run("gpgv", "--keyring", str(KEYRING), str(release))
        name = "main/binary-amd64/Packages.xz"
        want = re.search(
            rf"^ ([0-9a-f]{{64}})\s+\d+\s+{re.escape(name)}$", release.read_text(), re.M
        )
        index = _download(f"{MIRROR}/dists/{PLUGIN_SUITE}/{name}")
        if want is None or hashlib.sha256(index).hexdigest() != want.group(1):
            raise EngineUnavailable(f"{name} of {PLUGIN_SUITE} does not match its InRelease")
        for stanza in lzma.decompress(index).decode().split("\n\n"):
            if f"\nFilename: {pool_path}\n" in f"\n{stanza}\n":
                found = re.search(r"^SHA256: ([0-9a-f]{64})$", stanza, re.M)
                return found.group(1) if found else None
        return None


def _install_plugin(name: str) -> None:
    pool_path, sha = PLUGINS[name]
    package = Path(pool_path).name.split("_")[0]
    try:
        deb = _download(f"{MIRROR}/{pool_path}")
    except OSError:
        # That version left the archive: take the suite's current one, by its signed index.
        stanza_url = f"{MIRROR}/dists/{PLUGIN_SUITE}/main/binary-amd64/Packages.xz"
        names = re.findall(
            rf"^Filename: (pool/main/d/{package}/{package}_[^ ]+_amd64\.deb)$",
            lzma.decompress(_download(stanza_url)).decode(),
            re.M,
        )
        if not names:
            raise EngineUnavailable(f"no {package} package in Debian {PLUGIN_SUITE}") from None
        pool_path = names[0]
        sha = _verified_packages_sha(pool_path) or ""
        deb = _download(f"{MIRROR}/{pool_path}")
    if hashlib.sha256(deb).hexdigest() != sha:
        raise EngineUnavailable(f"{pool_path}: SHA-256 mismatch")
    with tempfile.NamedTemporaryFile(suffix=".deb") as file:
        file.write(deb)
        file.flush()
        run("dpkg", "-i", file.name)


def _start_dockerd() -> None:
    log = DOCKERD_LOG.open("ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _engine_answers():
            return
        time.sleep(1)
    raise EngineUnavailable(f"dockerd did not answer within 60 s; see {DOCKERD_LOG}")


def ensure_engine() -> None:
    """Make ``docker``, ``docker compose`` (v2) and ``docker buildx`` usable (as root: install).

    Raises:
        EngineUnavailable: not root and no engine answers, or the set-up failed.
    """
    if not _engine_answers():
        if os.geteuid() != 0:
            raise EngineUnavailable("no Docker engine answers and this is not root")
        if shutil.which("dockerd") is None:
            apt_install("docker.io")
        if not _engine_answers():
            _start_dockerd()
    for name in PLUGINS:
        if _plugin_works(name):
            continue
        if os.geteuid() != 0:
            raise EngineUnavailable(f"`docker {name}` is missing and this is not root")
        _install_plugin(name)
        if not _plugin_works(name):
            raise EngineUnavailable(f"`docker {name} version` still fails after installing it")
