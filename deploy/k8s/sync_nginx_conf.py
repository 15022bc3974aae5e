"""Write deploy/k8s/base/nginx.conf from deploy/nginx.conf, the compose stack's proxy.

The Kubernetes copy differs in its upstream only: no Docker resolver (127.0.0.11), and
`api` is a ClusterIP Service that nginx resolves once at start, with the pod's search
domains (so any namespace works), while kube-proxy spreads the connections over the ready
pods. Run it after editing deploy/nginx.conf; tests/unit/test_k8s_manifests.py checks that
the copy keeps every other directive (the edge limits, the JSON errors).

    python deploy/k8s/sync_nginx_conf.py            # rewrite the copy
    python deploy/k8s/sync_nginx_conf.py --stdout   # print it instead
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1]
HEADER = """\
# deploy/nginx.conf for Kubernetes (ConfigMap proxy-conf), written by
# deploy/k8s/sync_nginx_conf.py: the same limits and answers; only the upstream differs.
# `api` is a ClusterIP Service: nginx resolves it once at start (with the pod's search
# domains, so any namespace works) and kube-proxy spreads connections over ready pods.
"""


def kubernetes_conf(compose_conf: str) -> str:
    """Return ``compose_conf`` without Docker's resolver and with the Service resolved once."""
    lines = compose_conf.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    body = "".join(lines[first:])
    # The resolver line, the comments just above it and one blank line after it.
    body = re.sub(r"(?:^[ \t]*#.*\n)*^[ \t]*resolver [^;]*;\n(?:[ \t]*\n)?", "", body, flags=re.M)
    if "server api:8000 resolve;" not in body:
        sys.exit("deploy/nginx.conf: no `server api:8000 resolve;` upstream to rewrite")
    return HEADER + body.replace("server api:8000 resolve;", "server api:8000;")


def main() -> None:
    """Rewrite the copy (or print it with ``--stdout``)."""
    text = kubernetes_conf((DEPLOY / "nginx.conf").read_text())
    if sys.argv[1:] == ["--stdout"]:
        sys.stdout.write(text)
    else:
        (DEPLOY / "k8s/base/nginx.conf").write_text(text)


if __name__ == "__main__":
    main()
