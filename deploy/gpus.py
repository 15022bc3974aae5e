#!/usr/bin/env python3
"""Write a compose override that runs one API process and one training worker per GPU.

    docker compose config --format json | python3 deploy/gpus.py 4 > docker-compose.gpus.yml
    docker compose -f docker-compose.yml -f docker-compose.gpus.yml up -d

The base file's ``api`` and ``worker`` take GPU 0 (``STYLIZE_API_GPU`` /
``STYLIZE_WORKER_GPU``); this adds ``api-gpu<i>`` and ``worker-gpu<i>`` for GPUs 1..N-1,
each a copy of the resolved base service with its own ``device_ids``. Every API copy also
answers to the name ``api``, so the proxy spreads requests over all of them. Inside a
container the one visible GPU is ``cuda:0``, so ``STYLIZE_DEVICE=cuda`` stays right.
Standard library only: it runs on the host, outside the image. The output is JSON, which
is valid YAML.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any


def _on_gpu(service: dict[str, Any], gpu: int) -> dict[str, Any]:
    service = copy.deepcopy(service)
    service.pop("container_name", None)
    service.pop("ports", None)  # only the proxy publishes a port
    devices = service.setdefault("deploy", {}).setdefault("resources", {})
    devices = devices.setdefault("reservations", {}).setdefault("devices", [])
    nvidia = [d for d in devices if d.get("driver") == "nvidia"] or [{"driver": "nvidia"}]
    gpu_device = {**nvidia[0], "device_ids": [str(gpu)], "capabilities": ["gpu"]}
    gpu_device.pop("count", None)  # `count` and `device_ids` exclude each other
    devices[:] = [d for d in devices if d.get("driver") != "nvidia"] + [gpu_device]
    return service


def override(config: dict[str, Any], gpus: int) -> dict[str, Any]:
    """Return the override for ``gpus`` GPUs, given the resolved base configuration."""
    base = config["services"]
    services: dict[str, Any] = {}
    for gpu in range(1, gpus):
        api = _on_gpu(base["api"], gpu)
        networks = api.get("networks") or {"default": None}
        api["networks"] = {
            name: {**(value or {}), "aliases": sorted({*(value or {}).get("aliases", []), "api"})}
            for name, value in networks.items()
        }
        services[f"api-gpu{gpu}"] = api
        services[f"worker-gpu{gpu}"] = _on_gpu(base["worker"], gpu)
    return {"services": services}


def main(argv: list[str] | None = None) -> int:
    """Read the resolved configuration on stdin, write the override on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gpus", type=int, help="number of GPUs on the host (nvidia-smi -L)")
    args = parser.parse_args(argv)
    if args.gpus < 1:
        parser.error("gpus must be at least 1")
    try:
        config = json.load(sys.stdin)
        result = override(config, args.gpus)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        print(
            "gpus.py: stdin must be `docker compose config --format json` of a project "
            f"with services api and worker ({exc})",
            file=sys.stderr,
        )
        return 2
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
