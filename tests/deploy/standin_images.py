"""Stand-in base images, built from Debian packages, where no image registry is reachable.

The Dockerfile builds ``FROM`` the official python image and the compose file runs the
official redis and nginx images. Where those are neither present nor pullable (no
registry, as on the CI machines), this builds images with the same names from the
machine's own apt sources: ``debootstrap`` of Debian (12, or unstable for nginx), ``docker
import``, then one small Dockerfile each (``standins/``). Each trusts the machine's extra
CA certificates, so pip works inside where TLS is intercepted. They carry the label
``org.stylize.standin``.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from docker_engine import apt_install, run

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "standins"
#: The debootstrapped bases, by Debian suite; nginx needs unstable's (see nginx.Dockerfile).
BASES = {"bookworm": "stylize-standin/debian:bookworm", "sid": "stylize-standin/debian:sid"}
SUITE_OF = {"python": "bookworm", "redis": "bookworm", "nginx": "sid"}
LABEL = "org.stylize.standin=1"
HOST_CAS = Path("/usr/local/share/ca-certificates")


def wanted_images() -> dict[str, str]:
    """Return ``{image name: stand-in kind}`` that the Dockerfile and compose file use."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    images = dict.fromkeys(re.findall(r"^\s+image: (\S+)$", compose, re.M))
    found = {python.group(1): "python"} if python else {}
    for image in images:
        kind = image.split(":")[0].rsplit("/", 1)[-1]
        if kind in ("redis", "nginx"):
            found[image] = kind
    return found


def _present(image: str) -> bool:
    return run("docker", "image", "inspect", image, check=False, timeout=60).returncode == 0


def _registry_resolves() -> bool:
    try:
        socket.getaddrinfo("registry-1.docker.io", 443)
    except OSError:
        return False
    return True


def _build_base(suite: str) -> None:
    """``debootstrap`` a Debian suite (minbase) with the host's CAs, imported as its base."""
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="stylize-rootfs-") as tmp:
        rootfs = Path(tmp, "rootfs")
        run(
            "debootstrap", "--variant=minbase", "--include=ca-certificates", suite,
            str(rootfs), "http://deb.debian.org/debian", timeout=1200,
        )  # fmt: skip
        for cert in sorted(HOST_CAS.glob("*.crt")):
            shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        run("chroot", str(rootfs), "update-ca-certificates")
        # The machine's clock may be ahead of the mirror's signatures' validity (as the
        # host's own apt is told): accept them, they are still verified.
        (rootfs / "etc/apt/apt.conf.d/99stylize-standin").write_text(
            'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n'
        )
        # No init system in a container: package scripts must not try to start services.
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        bundle = "/etc/ssl/certs/ca-certificates.crt"
        cas = f"PIP_CERT={bundle} SSL_CERT_FILE={bundle} REQUESTS_CA_BUNDLE={bundle}"
        run_import = subprocess.run(
            [
                "docker", "import",
                "--change", "ENV LANG=C.UTF-8",
                "--change", f"ENV {cas}",
                "--change", "CMD [\"bash\"]",
                "-", BASES[suite],
            ],
            stdin=tar.stdout, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        tar.wait()
        if run_import.returncode != 0:
            raise RuntimeError(f"docker import failed: {run_import.stderr}")


def ensure_base_images(log: list[str] | None = None) -> list[str]:
    """Make every base image present: pulled where a registry answers, else stand-ins.

    Returns the names that were built as stand-ins now (empty when all were present).
    """
    built: list[str] = []
    missing = {image: kind for image, kind in wanted_images().items() if not _present(image)}
    if missing and _registry_resolves():
        for image in list(missing):
            if run("docker", "pull", image, check=False, timeout=900).returncode == 0:
                del missing[image]
    if not missing:
        return built
    for image, kind in missing.items():
        base = BASES[SUITE_OF[kind]]
        if not _present(base):
            _build_base(SUITE_OF[kind])
            if log is not None:
                log.append(f"built {base}")
        run(
            "docker", "build", "--build-arg", f"BASE={base}", "--label", LABEL,
            "-t", image, "-f", str(HERE / f"{kind}.Dockerfile"), str(HERE), timeout=1200,
        )  # fmt: skip
        built.append(image)
        if log is not None:
            log.append(f"built stand-in {image}")
    return built
