"""The Kubernetes manifests (deploy/k8s): rendered offline, validated against the schemas.

No cluster and no kustomize binary needed: ``kustomize_render.render`` applies the few
kustomize features the manifests use; where kubectl is on PATH, ``kubectl kustomize`` must
render the same documents. Every document is then validated (strictly: unknown fields
fail) with kubernetes-validate's bundled schemas, and checked against the code it deploys.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kustomize_render import Doc, containers, doc_id, in_pod, pod_specs, render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
OVERLAYS = ("cpu", "gpu")
# The oldest and the newest Kubernetes the manifests are validated for (schemas bundled in
# kubernetes-validate, read offline).
KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
SECRETS = {
    "stylize-api-keys": {"api_keys"},
    "stylize-admin-keys": {"admin_keys"},
    "stylize-s3": {"credentials", "root_user", "root_password"},
}
# Variables that are not stylize settings, each read by a program the pods run.
OTHER_VARIABLES = {
    "AWS_ENDPOINT_URL",  # boto3 (the S3 store)
    "AWS_REGION",
    "AWS_SHARED_CREDENTIALS_FILE",
    "FORWARDED_ALLOW_IPS",  # uvicorn
    "OMP_NUM_THREADS",  # torch in the worker
    "MINIO_ROOT_USER_FILE",  # the MinIO server
    "MINIO_ROOT_PASSWORD_FILE",
}

# ---------------------------------------------------------------- helpers


def _get(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(doc for doc in docs if doc_id(doc) == (kind, name))


def _container(docs: list[Doc], kind: str, name: str) -> Doc:
    return _get(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _environment(docs: list[Doc], container: Doc) -> dict[str, str]:
    """A container's variables: its ConfigMaps' (envFrom) and its own."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env |= _get(docs, "ConfigMap", source["configMapRef"]["name"])["data"]
    return env | {e["name"]: e.get("value", "") for e in container.get("env", [])}


# Ids other than plain "gpu", which tests/conftest.py takes for the `gpu` marker (CUDA).
_IDS = [f"overlays/{name}" for name in OVERLAYS]


@pytest.fixture(scope="module", params=OVERLAYS, ids=_IDS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(K8S / "overlays" / request.param)


# ---------------------------------------------------------------- the tests


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl to compare with")
@pytest.mark.parametrize("name", OVERLAYS, ids=_IDS)
def test_render_matches_kubectl_kustomize(name: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = {doc_id(doc): doc for doc in yaml.safe_load_all(out) if doc}
    ours = {doc_id(doc): doc for doc in render(K8S / "overlays" / name)}
    assert sorted(ours) == sorted(theirs)
    for key, doc in ours.items():
        assert doc == theirs[key], key


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_validates(overlay: tuple[str, list[Doc]], version: str) -> None:
    import kubernetes_validate

    for doc in overlay[1]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay[0]} {doc_id(doc)} on Kubernetes {version}: {exc}")


def test_variables_are_real_settings(overlay: tuple[str, list[Doc]]) -> None:
    """A misspelled STYLIZE_ name would be silently ignored (extra="ignore")."""
    from service.settings import ServiceSettings
    from worker.settings import WorkerSettings

    docs = overlay[1]
    readers = {
        "service": set(ServiceSettings.model_fields),
        "worker": set(WorkerSettings.model_fields),
    }
    for container in containers(docs):
        command = container.get("command", [])
        fields = readers.get(command[-1]) if command[:2] == ["python", "-m"] else None
        for name in _environment(docs, container):
            if not name.startswith("STYLIZE_"):
                assert name in OTHER_VARIABLES, (container["name"], name)
                continue
            field = name.removeprefix("STYLIZE_").removesuffix("_FILE").lower()
            # The shared ConfigMap reaches both processes: its names must mean something
            # to each; the bucket Job's script reads them itself.
            for known in [fields] if fields else readers.values():
                assert field in known, (container["name"], name)
    env = _environment(docs, _container(docs, "Deployment", "worker"))
    assert env["STYLIZE_MODEL_STORE"].startswith("s3://")
    assert env["STYLIZE_REDIS_URL"] == "redis://redis:6379/0"  # the Service below
    assert {"redis", "minio"} <= {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}


class _TagsLoader(yaml.SafeLoader):
    """Reads compose's ``!reset`` tag as a plain value."""


_TagsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _compose_image(compose: Doc, service: str) -> str:
    image = compose["services"][service]["image"]
    return re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", image)


def test_images_are_the_compose_images(overlay: tuple[str, list[Doc]]) -> None:
    name, docs = overlay
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    if name == "cpu":
        cpu = yaml.load((ROOT / "docker-compose.cpu.yml").read_text(), Loader=_TagsLoader)
        compose["services"]["api"]["image"] = cpu["services"]["api"]["image"]
    expected = {
        ("Deployment", "api"): _compose_image(compose, "api"),
        ("Deployment", "worker"): _compose_image(compose, "api"),  # one image for both
        ("Job", "minio-bucket"): _compose_image(compose, "api"),
        ("Deployment", "proxy"): _compose_image(compose, "proxy"),
        ("StatefulSet", "redis"): _compose_image(compose, "redis"),
    }
    assert expected[("Deployment", "api")] == f"stylize:{'cpu' if name == 'cpu' else 'latest'}"
    for (kind, doc_name), image in expected.items():
        assert _container(docs, kind, doc_name)["image"] == image
    minio = _container(docs, "StatefulSet", "minio")["image"]
    assert re.fullmatch(r"[\w./-]+/minio:RELEASE\.[\dT-]+Z", minio)  # pinned, not :latest
    redis = _container(docs, "StatefulSet", "redis")
    assert redis["args"] == compose["services"]["redis"]["command"]  # AOF, fsync each second
    claims = _get(docs, "StatefulSet", "redis")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == [redis["volumeMounts"][0]["name"]]
    for kind, module in (("api", "service"), ("worker", "worker")):
        assert _container(docs, "Deployment", kind)["command"] == ["python", "-m", module]


def test_gpu_overlay_gives_each_worker_and_api_pod_one_gpu(
    overlay: tuple[str, list[Doc]],
) -> None:
    name, docs = overlay
    for kind in ("api", "worker"):
        env = _environment(docs, _container(docs, "Deployment", kind))
        assert env["STYLIZE_DEVICE"] == ("cuda" if name == "gpu" else "cpu")
        pod = _get(docs, "Deployment", kind)["spec"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        gpus = [resources[part].get("nvidia.com/gpu") for part in ("requests", "limits")]
        assert gpus == (["1", "1"] if name == "gpu" else [None, None]), kind
        if name == "gpu":
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
                pod["tolerations"]
            )
    worker = _get(docs, "Deployment", "worker")["spec"]
    assert worker["strategy"]["rollingUpdate"]["maxSurge"] == 0  # never a GPU more


def test_secrets_are_mounted_files_not_variables(overlay: tuple[str, list[Doc]]) -> None:
    docs = overlay[1]
    assert not [d for d in docs if d["kind"] == "Secret"]  # operator-made (docs/DEPLOYMENT.md)
    text = json.dumps(docs)
    assert "secretKeyRef" not in text and "secretRef" not in text
    for pod in pod_specs(docs):
        files = {}  # path in the container -> (secret, key)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in in_pod(pod):
            for mount in container.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})
                sources = volume.get("projected", {}).get("sources", [])
                for source in [s["secret"] for s in sources if "secret" in s]:
                    assert mount.get("readOnly") is True
                    for item in source["items"]:
                        assert item["key"] in SECRETS[source["name"]]
                        files[f"{mount['mountPath']}/{item['path']}"] = source["name"]
            for variable, value in _environment(docs, container).items():
                secretish = re.search(r"KEY|SECRET|PASSWORD|CREDENTIAL|ROOT_USER", variable)
                if secretish:
                    assert variable.endswith("_FILE") and value in files, (variable, value)
    api = _environment(docs, _container(docs, "Deployment", "api"))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert (
        api["STYLIZE_API_KEYS_FILE"]
        == compose["services"]["api"]["environment"]["STYLIZE_API_KEYS_FILE"]
    )


def test_admin_keys_come_from_their_secret_as_in_compose(overlay: tuple[str, list[Doc]]) -> None:
    docs = overlay[1]
    api = _container(docs, "Deployment", "api")
    path = _environment(docs, api)["STYLIZE_ADMIN_KEYS_FILE"]
    admin = yaml.safe_load((ROOT / "docker-compose.admin.yml").read_text())
    assert path == admin["services"]["api"]["environment"]["STYLIZE_ADMIN_KEYS_FILE"]
    # The file is the admin_keys key of stylize-admin-keys, where the API mounts its secrets.
    pod = _get(docs, "Deployment", "api")["spec"]["template"]["spec"]
    mount = next(m for m in api["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    sources = [s["secret"] for s in volume["projected"]["sources"] if "secret" in s]
    items = {
        (s["name"], i["key"]): f"{mount['mountPath']}/{i['path']}"
        for s in sources
        for i in s["items"]
    }
    assert items[("stylize-admin-keys", "admin_keys")] == path
    # The worker has no use for them.
    assert "STYLIZE_ADMIN_KEYS_FILE" not in _environment(
        docs, _container(docs, "Deployment", "worker")
    )


def test_probes_hit_routes_that_exist(overlay: tuple[str, list[Doc]]) -> None:
    from service.routes.health import router

    docs = overlay[1]
    routes = {route.path for route in router.routes}
    api = _container(docs, "Deployment", "api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {api[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe")} <= routes
    conf = _get(
        docs, "ConfigMap", next(n for _, n in map(doc_id, docs) if n.startswith("proxy-conf"))
    )
    proxy = _container(docs, "Deployment", "proxy")
    path = proxy["readinessProbe"]["httpGet"]["path"]
    assert f"location = {path} " in conf["data"]["nginx.conf"]
    annotations = _get(docs, "Deployment", "api")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes


def test_pods_run_as_non_root_with_limits(overlay: tuple[str, list[Doc]]) -> None:
    for pod in pod_specs(overlay[1]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's user (Dockerfile)
        assert pod["automountServiceAccountToken"] is False
        for container in in_pod(pod):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if container["image"].startswith("stylize:") and "-m" in container["command"]:
                assert {"/tmp", "/home/stylize"} <= mounts  # the only writable places


def test_api_autoscales_on_a_metric_it_exports(overlay: tuple[str, list[Doc]]) -> None:
    from service.metrics import ServiceMetrics

    docs = overlay[1]
    exported = {family.name for family in ServiceMetrics().registry.collect()}
    hpa = _get(docs, "HorizontalPodAutoscaler", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api",
    }
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] in exported
    assert metrics["Resource"]["resource"]["name"] == "cpu"  # the fallback without an adapter
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in _get(docs, "Deployment", "api")["spec"]  # the HPA owns it
    labels = _get(docs, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    selector = _get(docs, "PodDisruptionBudget", "api")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()


def _pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """The pod labels of every workload, by its name."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"]
        for doc in docs
        if "template" in doc.get("spec", {})
    }


def test_only_the_proxy_reaches_the_api_that_trusts_any_forwarded_for(
    overlay: tuple[str, list[Doc]],
) -> None:
    """FORWARDED_ALLOW_IPS="*" is safe only while nothing but the edge reaches the API."""
    docs = overlay[1]
    api = _container(docs, "Deployment", "api")
    assert _environment(docs, api)["FORWARDED_ALLOW_IPS"] == "*"
    assert "http" in {port["name"] for port in api["ports"]}  # the policy's named port
    pods = _pod_labels(docs)
    policies = [
        doc
        for doc in docs
        if doc["kind"] == "NetworkPolicy"
        and doc["spec"]["podSelector"].get("matchLabels", {}).items() <= pods["api"].items()
    ]
    assert policies, "no NetworkPolicy selects the API pods"
    for policy in policies:
        spec = policy["spec"]
        assert "matchExpressions" not in spec["podSelector"]
        assert "Ingress" in spec["policyTypes"]
        for rule in spec["ingress"]:
            assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
            for peer in rule["from"]:
                # Pods of this namespace only: no ipBlock, no namespaceSelector.
                assert list(peer) == ["podSelector"], peer
                selector = peer["podSelector"]
                assert list(selector) == ["matchLabels"], selector
                chosen = {
                    name
                    for name, labels in pods.items()
                    if selector["matchLabels"].items() <= labels.items()
                }
                assert chosen == {"proxy"}, chosen
    # The edge writes the header itself: a client's own X-Forwarded-For never gets through.
    conf = _get(
        docs, "ConfigMap", next(n for _, n in map(doc_id, docs) if n.startswith("proxy-conf"))
    )
    directives = _nginx_directives(conf["data"]["nginx.conf"])
    passes = {block for block, directive in directives if directive.startswith("proxy_pass ")}
    forwarded = {
        block: directive
        for block, directive in directives
        if directive.startswith("proxy_set_header X-Forwarded-For ")
    }
    assert set(forwarded) == passes
    assert set(forwarded.values()) == {"proxy_set_header X-Forwarded-For $remote_addr"}
    # And it sees the client's address, not a node's (no SNAT on the way in).
    assert _get(docs, "Service", "proxy")["spec"]["externalTrafficPolicy"] == "Local"


def _nginx_directives(text: str) -> list[tuple[str, ...]]:
    """``(enclosing blocks, directive with arguments)`` of an nginx configuration."""
    tokens = re.findall(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|#[^\n]*|[{};]|[^\s{};]+", text)
    blocks: list[str] = []
    words: list[str] = []
    found = []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token == "{":
            blocks.append(" ".join(words))
            words = []
        elif token == "}":
            blocks.pop()
        elif token == ";":
            found.append((" / ".join(blocks), " ".join(words)))
            words = []
        else:
            words.append(token)
    return found


def test_proxy_conf_keeps_the_compose_proxys_limits() -> None:
    """deploy/k8s/base/nginx.conf is deploy/nginx.conf but for the upstream's address."""
    compose = (ROOT / "deploy/nginx.conf").read_text()
    assert ("http / upstream stylize_api", "server api:8000 resolve") in _nginx_directives(compose)
    k8s = _nginx_directives((K8S / "base/nginx.conf").read_text())
    assert ("http / upstream stylize_api", "server api:8000") in k8s
    assert not [d for d in k8s if d[1].startswith("resolver")]
    written = subprocess.run(
        [sys.executable, str(K8S / "sync_nginx_conf.py"), "--stdout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = _nginx_directives(written)
    assert k8s == expected, "deploy/nginx.conf changed: python deploy/k8s/sync_nginx_conf.py"


def test_bucket_job_and_store_url_work_on_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Job's script makes the bucket the store URL names; the store then opens on it."""
    import boto3
    from moto import mock_aws

    from model_store import open_store

    docs = render(K8S / "overlays/cpu")
    job = _container(docs, "Job", "minio-bucket")
    env = _environment(docs, job)
    # The credentials file as docs/DEPLOYMENT.md makes it (boto3 must read it).
    credentials = tmp_path / "s3-credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = stylize\naws_secret_access_key = not-a-real-secret\n"
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # moto answers for AWS itself
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    script = job["command"][-1]
    with mock_aws(config={"core": {"mock_credentials": False}}):
        session = boto3.Session()
        assert session.get_credentials().method == "shared-credentials-file"
        assert session.get_credentials().access_key == "stylize"
        exec(compile(script, "minio-bucket", "exec"), {})
        exec(compile(script, "minio-bucket", "exec"), {})  # again: the bucket is there
        store = open_store(env["STYLIZE_MODEL_STORE"], scratch_root=tmp_path / "scratch")
        assert store.list_styles().items == ()


def test_fleet_docs_name_what_an_operator_provides() -> None:
    """docs/DEPLOYMENT.md's Fleet section (moved there from the README), which the README links."""
    assert "docs/DEPLOYMENT.md#fleet-kubernetes" in (ROOT / "README.md").read_text()
    docs = (ROOT / "docs/DEPLOYMENT.md").read_text()
    section = docs.split("## Fleet (Kubernetes)\n", 1)[1].split("\n## ", 1)[0]
    for overlay_name in OVERLAYS:
        assert f"kubectl apply -k deploy/k8s/overlays/{overlay_name}" in section
    for secret, keys in SECRETS.items():
        assert secret in section and all(key in section for key in keys), secret
    for word in ("metrics adapter", "storage class", "registry"):
        assert word in section, word
