"""Identifiers and stored-file names, validated before they touch a path or a key.

Everything that becomes part of a filesystem path or an S3 key passes one of the strict
patterns below, so ``../``, absolute names, separators, NUL bytes and unicode look-alikes
are rejected up front rather than sanitised.
"""

from __future__ import annotations

import re
import secrets

from model_store.errors import InvalidStyleId

#: Lowercase so ids are case-insensitive-filesystem safe; ``.`` and ``/`` are excluded,
#: which alone rules out ``..`` and absolute or nested names.
STYLE_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

#: RFC 4648 base32 alphabet, lowercased: URL-safe and free of ambiguous 0/1/8/9.
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
GENERATED_ID_LENGTH = 12  # 60 random bits: collisions are retried anyway

#: An incarnation names one life of a style id: deleting and re-creating ``mosaic``
#: gives new files a fresh prefix, so a slow delete can never remove the new style's data.
_INCARNATION_RE = re.compile(r"[0-9a-f]{16}")

#: File names a manifest may reference, relative to the incarnation directory/prefix.
#: A tampered manifest therefore cannot point a read at an arbitrary path or key.
_BLOB_NAME_RE = re.compile(
    r"weights/[0-9a-f]{64}\.(?:safetensors|delta)"
    r"|exports/[0-9a-f]{64}\.onnx"
    r"|(?:style|preview)-[0-9a-f]{16}\.(?:png|jpg|webp|gif|bmp|tiff|bin)"
)


def generate_style_id() -> str:
    """Return a fresh random style id (12 lowercase base32 characters)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(GENERATED_ID_LENGTH))


def is_valid_style_id(style_id: object) -> bool:
    """Return whether ``style_id`` is a string matching :data:`STYLE_ID_RE`."""
    return isinstance(style_id, str) and STYLE_ID_RE.fullmatch(style_id) is not None


def validate_style_id(style_id: object) -> str:
    """Return ``style_id`` unchanged if valid.

    Raises:
        InvalidStyleId: if it is not a 1-64 character ``[a-z0-9][a-z0-9_-]*`` string.
    """
    if not is_valid_style_id(style_id):
        raise InvalidStyleId(style_id)
    assert isinstance(style_id, str)  # narrowed by is_valid_style_id
    return style_id


def new_incarnation() -> str:
    """Return a fresh incarnation tag (16 hex characters)."""
    return secrets.token_hex(8)


def is_valid_incarnation(tag: object) -> bool:
    """Return whether ``tag`` looks like a value from :func:`new_incarnation`."""
    return isinstance(tag, str) and _INCARNATION_RE.fullmatch(tag) is not None


def is_valid_blob_name(name: object) -> bool:
    """Return whether ``name`` is a file name the store itself would have written."""
    return isinstance(name, str) and _BLOB_NAME_RE.fullmatch(name) is not None


#: A style's owner: an opaque id the service derives from an API key (never the key).
_OWNER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_valid_owner(owner: object) -> bool:
    """Return whether ``owner`` is a valid owner id (1-64 of ``[A-Za-z0-9_-]``)."""
    return isinstance(owner, str) and _OWNER_RE.fullmatch(owner) is not None
