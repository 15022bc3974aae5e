from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import save
from safetensors.torch import save as torch_save

from model_store import InvalidWeights
from model_store.content import check_safetensors, sha256_hex, sniff_image


def test_accepts_real_safetensors() -> None:
    data = save({"a": np.zeros((2, 3), np.float32), "b": np.arange(4, dtype=np.int64)})
    assert check_safetensors(data) == 2
    assert check_safetensors(torch_save({"w": torch.ones(3, 3)})) == 1


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00" * 7,
        b"\xff" * 16,  # absurd header length
        pickle.dumps({"w": [1.0, 2.0]}),
        b"PK\x03\x04 zip archive as written by torch.save",
        save({"a": np.zeros(4, np.float32)})[:-1],  # truncated
        save({"a": np.zeros(4, np.float32)}) + b"\x00",  # trailing garbage
        save({}),  # no tensors
    ],
)
def test_rejects_everything_else(bad: bytes) -> None:
    with pytest.raises(InvalidWeights):
        check_safetensors(bad)


def test_rejects_non_bytes() -> None:
    with pytest.raises(InvalidWeights):
        check_safetensors("weights")  # type: ignore[arg-type]


def test_rejects_header_with_overlapping_offsets() -> None:
    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
    header += b'"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    data = len(header).to_bytes(8, "little") + header + b"\x00" * 8
    with pytest.raises(InvalidWeights):
        check_safetensors(data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", ("image/png", "png")),
        (b"\xff\xd8\xff\xe0....", ("image/jpeg", "jpg")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("image/webp", "webp")),
        (b"GIF89a..", ("image/gif", "gif")),
        (b"whatever", ("application/octet-stream", "bin")),
    ],
)
def test_sniff_image(data: bytes, expected: tuple[str, str]) -> None:
    assert sniff_image(data) == expected


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
