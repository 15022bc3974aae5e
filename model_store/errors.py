"""Exceptions raised by the model store.

Every error the store raises on purpose derives from :class:`ModelStoreError`, so a
caller can catch one type; subclasses carry the fields a caller needs to react
(which style, which version) rather than only a message::

    ModelStoreError
    ├── InvalidStoreURL       the STYLIZE_MODEL_STORE setting cannot be used
    ├── InvalidStyleId        an id that could escape the store (``../x``, ``/etc``)
    ├── StyleNotFound         no style with that id (never created, or deleted)
    ├── StyleExists           create with a client-chosen id that is taken
    ├── VersionNotFound       the style has no such weights version (or none yet)
    ├── PreviewNotFound       no preview thumbnail has been set yet
    ├── InvalidCursor         a ``list_styles`` cursor that this store did not issue
    ├── InvalidTransition     a status change the lifecycle forbids
    │                         (e.g. publishing to a canceled style)
    ├── Conflict              too many concurrent writers; the write was not applied
    ├── HasDependents         delete of a style other styles' stored deltas need
    ├── InvalidWeights        bytes offered to ``publish`` are not a safetensors file
    ├── CorruptRecord         a manifest or stored file is damaged
    │   └── ChecksumMismatch  weights whose sha256 differs from the manifest
    └── BackendError          the storage itself failed (I/O, network, permissions)
"""

from __future__ import annotations


class ModelStoreError(Exception):
    """Base class of every error raised by ``model_store``."""


class InvalidStoreURL(ModelStoreError):
    """The store URL has an unknown scheme or is missing a required part."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid model store URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class InvalidStyleId(ModelStoreError):
    """A style id failed validation; it never reaches the filesystem or a key."""

    def __init__(self, style_id: object) -> None:
        super().__init__(f"invalid style id {style_id!r}")
        self.style_id = style_id


class StyleNotFound(ModelStoreError):
    """No style has this id."""

    def __init__(self, style_id: str) -> None:
        super().__init__(f"style {style_id!r} not found")
        self.style_id = style_id


class StyleExists(ModelStoreError):
    """``create`` was given an id that already names a style."""

    def __init__(self, style_id: str) -> None:
        super().__init__(f"style {style_id!r} already exists")
        self.style_id = style_id


class VersionNotFound(ModelStoreError):
    """The style exists but has no such version (``version=None``: no version yet)."""

    def __init__(self, style_id: str, version: int | None) -> None:
        what = "no published version" if version is None else f"no version {version}"
        super().__init__(f"style {style_id!r} has {what}")
        self.style_id = style_id
        self.version = version


class PreviewNotFound(ModelStoreError):
    """The style exists but has no preview thumbnail yet."""

    def __init__(self, style_id: str) -> None:
        super().__init__(f"style {style_id!r} has no preview")
        self.style_id = style_id


class InvalidCursor(ModelStoreError):
    """A pagination cursor could not be decoded."""

    def __init__(self, cursor: str) -> None:
        super().__init__(f"invalid cursor {cursor!r}")
        self.cursor = cursor


class InvalidTransition(ModelStoreError):
    """The requested change is not allowed from the style's current status."""

    def __init__(self, style_id: str, current: str, requested: str) -> None:
        # str(): a Status is a StrEnum, whose repr would print as <Status.QUEUED: 'queued'>.
        current, requested = str(current), str(requested)
        super().__init__(f"style {style_id!r}: cannot go from {current!r} to {requested!r}")
        self.style_id = style_id
        self.current = current
        self.requested = requested

    @property
    def canceled(self) -> bool:
        """True when the style was canceled: a worker should stop training it."""
        return self.current == "canceled"


class Conflict(ModelStoreError):
    """A compare-and-swap on the manifest kept losing to other writers."""

    def __init__(self, style_id: str, attempts: int) -> None:
        super().__init__(f"style {style_id!r}: gave up after {attempts} conflicting writes")
        self.style_id = style_id
        self.attempts = attempts


class HasDependents(ModelStoreError):
    """The style cannot be deleted: other styles' versions are stored as deltas over it.

    Attributes:
        dependents: ids of those styles, sorted; deleting them (or retraining them
            until no version they keep is a delta over this style) lets it go.
    """

    def __init__(self, style_id: str, dependents: list[str]) -> None:
        names = ", ".join(dependents)
        super().__init__(
            f"style {style_id!r} cannot be deleted: {len(dependents)} style(s) store only "
            f"what differs from its weights ({names}); delete them first, or retrain them "
            "until no version they keep is stored over it"
        )
        self.style_id = style_id
        self.dependents = list(dependents)


class InvalidWeights(ModelStoreError):
    """Bytes offered as weights are not a well-formed, non-empty safetensors file."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid weights: {reason}")
        self.reason = reason


class CorruptRecord(ModelStoreError):
    """A stored manifest or file of one style is damaged; other styles are unaffected."""

    def __init__(self, style_id: str, reason: str) -> None:
        super().__init__(f"style {style_id!r} is corrupt: {reason}")
        self.style_id = style_id
        self.reason = reason


class ChecksumMismatch(CorruptRecord):
    """Weights read back do not match the sha256 recorded when they were published."""

    def __init__(self, style_id: str, version: int, expected: str, actual: str) -> None:
        super().__init__(
            style_id,
            f"weights of version {version} have sha256 {actual}, manifest says {expected}",
        )
        self.version = version
        self.expected = expected
        self.actual = actual


class BackendError(ModelStoreError):
    """The underlying storage failed (disk, permissions, network, S3 error)."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"model store {operation} failed: {reason}")
        self.operation = operation
        self.reason = reason
