"""A weights file stored as the tensors that differ from a parent's file.

A generator fine-tuned from another style's weights shares most tensors with it byte for
byte (a γ/β-only adaptation changes a few kB of its megabytes). :func:`make_delta`
keeps what the parent cannot supply and :func:`apply_delta` rebuilds the file, byte for
byte, so the sha256 recorded at publish still identifies (and verifies) the version.

The rebuilt file is a sequence of pieces, each either bytes stored in the delta
(``own``: the child's safetensors header, any tensor that differs, any padding) or a
tensor copied from the parent by name (``parent``). Only the byte layout of safetensors
is read (``u64`` header length, JSON header, data buffer addressed by ``data_offsets``);
tensors are never decoded, so this needs neither torch nor numpy.

Layout of a delta file::

    MAGIC (14 bytes) | u64 little-endian n | n bytes of JSON index | payload

The index: ``{"format_version": 1, "size", "sha256", "parent_sha256", "pieces":
[["own", length] | ["parent", tensor name], ...]}``; the ``own`` pieces' bytes follow
one another in the payload.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

MAGIC = b"stylize-delta\n"
FORMAT_VERSION = 1
#: The largest safetensors header parsed (the format's own limit is 100 MB).
_MAX_HEADER = 100 * 1024 * 1024


class DeltaError(ValueError):
    """A delta (or the file it is made from) cannot be read; the message says why."""


def tensor_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """Return each tensor's ``(begin, end)`` in a safetensors file, from its first byte.

    Raises:
        DeltaError: ``data`` is not laid out as a safetensors file.
    """
    if len(data) < 8:
        raise DeltaError("shorter than a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise DeltaError("safetensors header length is out of range")
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, UnicodeDecodeError) as exc:
        raise DeltaError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise DeltaError("safetensors header is not an object")
    start = 8 + n
    spans: dict[str, tuple[int, int]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in entry["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise DeltaError(f"tensor {name!r} has no data_offsets") from None
        if not 0 <= begin <= end <= len(data) - start:
            raise DeltaError(f"tensor {name!r} lies outside the file")
        spans[name] = (start + begin, start + end)
    return spans


def make_delta(child: bytes, parent: bytes) -> bytes:
    """Return ``child`` as a delta over ``parent`` (see the module doc).

    Each of the child's tensors whose bytes equal the parent's tensor of the same name
    becomes a reference; everything else is stored. Both files must be safetensors.

    Raises:
        DeltaError: either file is not laid out as a safetensors file.
    """
    parent_spans = tensor_spans(parent)
    spans = tensor_spans(child)
    pieces: list[list[Any]] = []
    payload = bytearray()

    def own(chunk: bytes) -> None:
        if not chunk:
            return
        if pieces and pieces[-1][0] == "own":  # merge neighbours: a short index
            pieces[-1][1] += len(chunk)
        else:
            pieces.append(["own", len(chunk)])
        payload.extend(chunk)

    position = 0
    # By offset, so gaps (none in files safetensors writes) are kept too.
    for name, (begin, end) in sorted(spans.items(), key=lambda item: item[1]):
        if begin < position:
            raise DeltaError(f"tensor {name!r} overlaps another")
        own(child[position:begin])  # the header, then any gap
        span = parent_spans.get(name)
        if span is not None and end > begin and parent[span[0] : span[1]] == child[begin:end]:
            pieces.append(["parent", name])
        else:
            own(child[begin:end])
        position = end
    own(child[position:])  # any trailing bytes (the whole file if it has no tensor)
    index = {
        "format_version": FORMAT_VERSION,
        "size": len(child),
        "sha256": hashlib.sha256(child).hexdigest(),
        "parent_sha256": hashlib.sha256(parent).hexdigest(),
        "pieces": pieces,
    }
    encoded = json.dumps(index, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<Q", len(encoded)) + encoded + bytes(payload)


def read_index(delta: bytes) -> dict[str, Any]:
    """Return a delta's index (its JSON), checked for shape but not against a parent.

    Raises:
        DeltaError: not a delta file of a version this code reads.
    """
    return _split(delta)[0]


def _split(delta: bytes) -> tuple[dict[str, Any], int]:
    """Return a delta's index and where its payload starts."""
    if not delta.startswith(MAGIC) or len(delta) < len(MAGIC) + 8:
        raise DeltaError("not a stylize delta file")
    (n,) = struct.unpack("<Q", delta[len(MAGIC) : len(MAGIC) + 8])
    body = len(MAGIC) + 8
    if body + n > len(delta):
        raise DeltaError("delta index runs past the end of the file")
    try:
        index = json.loads(delta[body : body + n])
        if index["format_version"] != FORMAT_VERSION:
            raise DeltaError(f"delta format {index['format_version']!r} is not supported")
        shaped = (
            isinstance(index["size"], int)
            and isinstance(index["sha256"], str)
            and isinstance(index["pieces"], list)
        )
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as exc:
        raise DeltaError(f"delta index is unreadable: {exc}") from None
    if not shaped:
        raise DeltaError("delta index lacks its size, sha256 or pieces")
    return index, body + n


def apply_delta(delta: bytes, parent: bytes, *, parent_sha256: str | None = None) -> bytes:
    """Rebuild the file ``delta`` was made from, given the same ``parent`` bytes.

    Verifies the parent's digest and the rebuilt file's size and sha256 against the
    delta's index, so a wrong parent or a damaged delta never yields a wrong file.
    ``parent_sha256``: the parent's digest, when the caller has just verified it (the
    parent is not hashed again).

    Raises:
        DeltaError: a damaged delta, another parent, or a rebuilt file that does not
            match the digest recorded in the delta.
    """
    index, cursor = _split(delta)
    if (parent_sha256 or hashlib.sha256(parent).hexdigest()) != index.get("parent_sha256"):
        raise DeltaError("the parent's bytes are not those the delta was made over")
    parent_spans = tensor_spans(parent)
    out = bytearray()
    for piece in index["pieces"]:
        if not isinstance(piece, list) or len(piece) != 2:
            raise DeltaError(f"bad delta piece {piece!r}")
        kind, value = piece
        if kind == "own" and isinstance(value, int) and 0 <= value <= len(delta) - cursor:
            out += delta[cursor : cursor + value]
            cursor += value
        elif kind == "parent" and isinstance(value, str) and value in parent_spans:
            begin, end = parent_spans[value]
            out += parent[begin:end]
        else:
            raise DeltaError(f"bad delta piece {piece!r}")
    if cursor != len(delta):
        raise DeltaError("delta payload has bytes no piece uses")
    if len(out) != index["size"] or hashlib.sha256(out).hexdigest() != index["sha256"]:
        raise DeltaError("the rebuilt file does not match the digest the delta records")
    return bytes(out)


__all__ = ["FORMAT_VERSION", "MAGIC", "DeltaError", "apply_delta", "make_delta", "read_index"]
