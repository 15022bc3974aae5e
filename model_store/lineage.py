"""Which stored version a version's weights depend on, and who depends on a style.

A version stored as a delta (:mod:`model_store.delta_format`) names its parent, a
full-file version of another style (:class:`ParentRef`), and says what it stores
(:class:`DeltaInfo`). The parent's manifest lists its dependents (:class:`Dependent`),
written before the child's manifest, so a delete of the parent sees every child that
could need it (:mod:`model_store.deltas` explains the protocol).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from model_store.ids import is_valid_style_id

_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ParentRef:
    """A version of a style, by id, version number and the sha256 of its weights."""

    style_id: str
    version: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """Return the manifest form."""
        return {"style_id": self.style_id, "version": self.version, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: Any) -> ParentRef:
        """Parse the manifest form.

        Raises:
            ValueError, TypeError, KeyError: not a well-formed reference.
        """
        ref = cls(str(d["style_id"]), int(d["version"]), str(d["sha256"]))
        if not is_valid_style_id(ref.style_id) or ref.version < 1 or not _is_sha(ref.sha256):
            raise ValueError(f"bad parent reference {d!r}")
        return ref


@dataclass(frozen=True)
class DeltaInfo:
    """How a version is stored when it is a delta over a parent's tensors.

    The version's own ``sha256`` and ``size`` stay those of the full weights file (what
    readers get back); these are the stored delta file's.
    """

    parent: ParentRef
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        """Return the manifest form."""
        return {"parent": self.parent.to_json(), "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_json(cls, d: Any) -> DeltaInfo:
        """Parse the manifest form (errors as :meth:`ParentRef.from_json`)."""
        info = cls(ParentRef.from_json(d["parent"]), str(d["sha256"]), int(d["size"]))
        if not _is_sha(info.sha256) or info.size < 1:
            raise ValueError(f"bad delta record {d!r}")
        return info


@dataclass(frozen=True)
class Dependent:
    """A style whose stored versions may need one version of this style's weights.

    ``since`` is when its publish marked it: a mark whose style has no such version
    yet is a publish in flight, and counts until :data:`model_store.deltas.MARK_GRACE_S`
    has passed.
    """

    style_id: str
    version: int
    since: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the manifest form."""
        return {"style_id": self.style_id, "version": self.version, "since": self.since.isoformat()}

    @classmethod
    def from_json(cls, d: Any) -> Dependent:
        """Parse the manifest form (errors as :meth:`ParentRef.from_json`)."""
        since = datetime.fromisoformat(d["since"])
        dep = cls(str(d["style_id"]), int(d["version"]), since)
        if not is_valid_style_id(dep.style_id) or dep.version < 1 or since.tzinfo is None:
            raise ValueError(f"bad dependent {d!r}")
        return dep


def parent_from_init(metrics: Mapping[str, Any] | None) -> ParentRef | None:
    """Return the style version a run started from, per its ``metrics["init"]`` record.

    Only a start of kind ``style`` names another stored style (with ``style_id``,
    ``version`` and ``sha256``, :meth:`stylenet.warmstart.Start.describe`); a base file,
    a retrain's own version and scratch name none.
    """
    init = (metrics or {}).get("init")
    if not isinstance(init, Mapping) or init.get("kind") != "style":
        return None
    try:
        return ParentRef.from_json(init)
    except (ValueError, TypeError, KeyError):
        return None


def _is_sha(value: str) -> bool:
    return len(value) == 64 and set(value) <= _HEX64


__all__ = ["DeltaInfo", "Dependent", "ParentRef", "parent_from_init"]
