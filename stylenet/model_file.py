"""The generator file: safetensors weights plus the metadata needed to serve them.

A file records its format and version, the generator structure, the pixel convention,
the training parameters, the loss network and held-out metrics. :func:`load_generator`
refuses anything it cannot serve faithfully (other format, newer version, other pixel
convention, missing or extra tensors) with a :class:`~stylenet.errors.ModelFileError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import nn

from .errors import InvalidParams, ModelFileError
from .files import atomic_write_bytes
from .generators import GeneratorConfig, build_generator
from .pixels import PIXEL_CONVENTION

FORMAT = "stylize-generator"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def code_version() -> str:
    """Return the installed stylize version (``unknown`` when run from a bare checkout)."""
    try:
        return importlib_metadata.version("stylize-service")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator file says about itself."""

    config: GeneratorConfig
    dtype: str
    train_params: dict[str, Any]
    lossnet: str
    metrics: dict[str, Any]
    code_version: str
    sha256: str
    size: int


def generator_to_bytes(
    model: nn.Module,
    *,
    train_params: dict[str, Any] | None = None,
    lossnet: str = "",
    metrics: dict[str, Any] | None = None,
    dtype: str = "float32",
) -> bytes:
    """Serialize a generator (weights in ``dtype``) with its metadata to safetensors bytes."""
    if dtype not in _DTYPES:
        raise InvalidParams("dtype", f"must be one of {tuple(_DTYPES)}")
    config: GeneratorConfig = model.config  # type: ignore[assignment]
    tensors = {
        k: (
            v.detach().to("cpu", _DTYPES[dtype]) if v.is_floating_point() else v.detach().cpu()
        ).contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "pixel_convention": PIXEL_CONVENTION,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "dtype": dtype,
        "train_params": json.dumps(train_params or {}, sort_keys=True),
        "lossnet": lossnet,
        "metrics": json.dumps(metrics or {}, sort_keys=True),
        "code_version": code_version(),
    }
    return save_bytes(tensors, metadata=meta)


def save_generator(path: Path | str, model: nn.Module, **kwargs: Any) -> str:
    """Write a generator file atomically (temp name, fsync, rename); return its sha256.

    Keyword arguments are those of :func:`generator_to_bytes`.
    """
    data = generator_to_bytes(model, **kwargs)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _header(data: bytes) -> dict[str, Any]:
    # The safetensors header is an 8-byte little-endian length then JSON; read it without
    # materializing tensors so a wrong file is rejected cheaply and precisely.
    if len(data) < 8:
        raise ModelFileError("not a generator file: too short to be safetensors")
    length = int.from_bytes(data[:8], "little")
    if length <= 0 or 8 + length > len(data):
        raise ModelFileError("not a generator file: invalid safetensors header")
    try:
        return json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError("not a generator file: unreadable safetensors header") from exc


def read_info(data: bytes, expected_sha256: str | None = None) -> GeneratorInfo:
    """Validate a generator file's metadata (and digest) without building the network."""
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise ModelFileError(f"checksum mismatch: sha256 is {digest}, expected {expected_sha256}")
    meta = _header(data).get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"not a stylize generator file (format={meta.get('format')!r})")
    version = int(meta.get("format_version", "0") or 0)
    if not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(
            f"generator file format version {version} is not supported by this code "
            f"(supports 1..{FORMAT_VERSION}); upgrade stylize"
        )
    if meta.get("pixel_convention") != PIXEL_CONVENTION:
        raise ModelFileError(
            f"generator expects pixels as {meta.get('pixel_convention')!r}, "
            f"this code serves {PIXEL_CONVENTION!r}"
        )
    try:
        config = GeneratorConfig(**json.loads(meta["config"]))
        return GeneratorInfo(
            config=config,
            dtype=meta.get("dtype", "float32"),
            train_params=json.loads(meta.get("train_params", "{}")),
            lossnet=meta.get("lossnet", ""),
            metrics=json.loads(meta.get("metrics", "{}")),
            code_version=meta.get("code_version", "unknown"),
            sha256=digest,
            size=len(data),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"generator file metadata is invalid: {exc}") from exc


def load_generator(
    source: bytes | Path | str,
    *,
    device: torch.device | str = "cpu",
    expected_sha256: str | None = None,
) -> tuple[nn.Module, GeneratorInfo]:
    """Build a generator in eval mode, float32, from a file path or its bytes.

    Args:
        source: the file's path or its content.
        device: where to put the network.
        expected_sha256: when given, the content must have this digest.

    Raises:
        ModelFileError: the file is corrupt, of another kind, or does not fit its structure.
    """
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read generator file {source}: {exc}") from exc
    info = read_info(data, expected_sha256)
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"generator file is corrupt: {exc}") from exc
    model = build_generator(info.config)
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"generator weights do not fit {info.config}: {exc}") from exc
    return model.to(device).eval(), info
