"""S3 backend behaviour that needs a misbehaving server, shown with a stub client.

The real protocol is covered by the contract suite against a moto server process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from model_store import BackendError, InvalidStoreURL, ModelStore
from model_store.s3_backend import S3Backend


class IgnoresConditions:
    """A server from before conditional writes: every put succeeds."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, str]:  # noqa: N803
        self.objects[Key] = Body
        return {"ETag": '"x"'}

    def delete_object(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, str]:  # noqa: N803
        self.objects.pop(Key, None)
        return {}


class Unreachable:
    def get_object(self, **_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://nowhere:9000")

    def put_object(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")


def test_server_without_conditional_writes_is_refused() -> None:
    client = IgnoresConditions()
    with pytest.raises(InvalidStoreURL, match="conditional"):
        S3Backend("bucket", "p", client=client)
    assert client.objects == {}  # the probe cleans up after itself


def test_transport_and_permission_errors_are_backend_errors() -> None:
    backend = S3Backend("bucket", client=Unreachable(), verify_conditional_writes=False)
    store = ModelStore(backend, scratch_root=Path("/nonexistent"))
    with pytest.raises(BackendError):
        store.get("mosaic")
    with pytest.raises(BackendError, match="AccessDenied"):
        backend.put_blob("mosaic", "0123456789abcdef/style-0123456789abcdef.png", b"x")


def test_prefix_is_normalised() -> None:
    backend = S3Backend("bucket", "/a//b/", client=object(), verify_conditional_writes=False)
    assert backend.describe() == "s3://bucket/a/b/"
