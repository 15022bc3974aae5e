"""A kustomize renderer for the few features deploy/k8s uses, so tests need no binary.

resources (files and folders), configMapGenerator (literals, files, ``behavior: merge``,
the name's hash suffix and the references to it), images, namespace and JSON 6902 patches;
anything else in a kustomization fails loudly. tests/unit/test_k8s_manifests.py checks the
output against ``kubectl kustomize`` where kubectl is installed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "images",
    "namespace",
    "patches",
}
_CLUSTER_KINDS = {"Namespace"}


def _kustomize(folder: Path) -> tuple[list[Doc], set[str]]:
    """Return one kustomization's documents and the names of its generated ConfigMaps."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert not set(spec) - _FIELDS, f"{folder}: teach render() {set(spec) - _FIELDS}"
    docs: list[Doc] = []
    generated: set[str] = set()
    for entry in spec.get("resources", []):
        path = folder / entry
        if path.is_dir():
            more, names = _kustomize(path)
            docs += more
            generated |= names
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generator in spec.get("configMapGenerator", []):
        data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
        for file in generator.get("files", []):
            data[Path(file).name] = (folder / file).read_text()
        name = generator["name"]
        if generator.get("behavior", "create") == "merge":
            assert name in generated, f"{folder}: merge into a missing generator {name}"
            next(d for d in docs if doc_id(d) == ("ConfigMap", name))["data"].update(data)
        else:
            assert name not in generated
            generated.add(name)
            docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
            docs[-1]["data"] = data
    for patch in spec.get("patches", []):
        target, ops = patch["target"], yaml.safe_load(patch["patch"])
        matched = [
            doc
            for doc in docs
            if doc["kind"] == target["kind"] and re.fullmatch(target["name"], doc_id(doc)[1])
        ]
        assert matched, f"{folder}: patch target {target} matches nothing"
        for doc in matched:
            _json6902(doc, ops)
    for image in spec.get("images", []):
        for container in containers(docs):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                tag = image.get("newTag", tag)
                container["image"] = f"{image.get('newName', name)}:{tag}"
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in _CLUSTER_KINDS:
                doc["metadata"]["namespace"] = spec["namespace"]
    return docs, generated


def _json6902(doc: Doc, ops: list[Doc]) -> None:
    for op in ops:
        *parents, key = (
            part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]
        )
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        index: Any = (len(node) if key == "-" else int(key)) if isinstance(node, list) else key
        value = copy.deepcopy(op.get("value"))
        if op["op"] == "test":
            assert node[index] == value, f"patch test failed: {op}"
        elif op["op"] == "add" and isinstance(node, list):
            node.insert(index, value)
        elif op["op"] in ("add", "replace"):
            there = index < len(node) if isinstance(node, list) else index in node
            assert there or op["op"] == "add", f"nothing to replace: {op}"
            node[index] = value
        elif op["op"] == "remove":
            del node[index]
        else:
            raise AssertionError(f"teach render() the patch op {op['op']}")


def _config_map_hash(doc: Doc) -> str:
    """Kustomize's name suffix for a generated ConfigMap (api/hasher)."""
    # Go's json.Marshal: sorted keys, no spaces, HTML characters escaped. The name is empty:
    # kustomize looks it up as one field called "metadata/name", which finds nothing.
    encoded = json.dumps(
        {"data": doc["data"], "kind": "ConfigMap", "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(char, escape)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def render(folder: Path) -> list[Doc]:
    """Render the kustomization in ``folder`` as ``kubectl kustomize`` would."""
    docs, generated = _kustomize(folder)
    renamed = {}
    for doc in docs:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] in generated:
            name = doc["metadata"]["name"]
            renamed[name] = doc["metadata"]["name"] = f"{name}-{_config_map_hash(doc)}"
    for pod in pod_specs(docs):
        refs = [v["configMap"] for v in pod.get("volumes", []) if "configMap" in v]
        refs += [e["configMapRef"] for c in in_pod(pod) for e in c.get("envFrom", [])]
        for ref in refs:
            ref["name"] = renamed.get(ref["name"], ref["name"])
    return docs


def doc_id(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def pod_specs(docs: list[Doc]) -> Iterator[Doc]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["spec"]["template"]["spec"]


def in_pod(pod: Doc) -> list[Doc]:
    return pod.get("initContainers", []) + pod["containers"]


def containers(docs: list[Doc]) -> Iterator[Doc]:
    for pod in pod_specs(docs):
        yield from in_pod(pod)
