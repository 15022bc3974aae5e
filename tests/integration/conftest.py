"""Fixtures for the model store contract suite (``test_model_store_*.py``): one store per
test, per backend (``file://`` and ``s3://``).

The S3 backend is tested over real HTTP against moto's S3 server running as a separate
process (see ``moto_s3_server.py``); nothing is patched in-process. The suite's helpers
are in ``store_testing.py``, what its spawned processes run in ``store_workers.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store import ModelStore, open_store

MOTO_SERVER = Path(__file__).with_name("moto_s3_server.py")
TEST_BUCKET = "stylize-contract"


@pytest.fixture(scope="session")
def moto_s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start an S3-compatible server; point the AWS environment at it; yield its URL."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(MOTO_SERVER)], stdout=subprocess.PIPE, stderr=err
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server prints its port once it is bound
        if not line.strip().isdigit():
            proc.kill()
            pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}")
        endpoint = f"http://127.0.0.1:{int(line)}"
        with pytest.MonkeyPatch.context() as mp:
            # Dummy credentials, and no host AWS config leaking in. Spawned worker
            # processes inherit these through os.environ.
            for name, value in {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL_S3": endpoint,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
            }.items():
                mp.setenv(name, value)
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
                mp.delenv(name, raising=False)
            _wait_and_create_bucket(TEST_BUCKET)
            yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_and_create_bucket(bucket: str) -> None:
    import boto3
    from botocore.exceptions import EndpointConnectionError

    client = boto3.client("s3")
    deadline = time.monotonic() + 15
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            return
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(params=["file", "s3"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL of each backend: a temp directory or a unique S3 prefix."""
    if request.param == "file":
        return (tmp_path / "models").as_uri()
    request.getfixturevalue("moto_s3_endpoint")
    return f"s3://{TEST_BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """Scratch root for checkpoints, inside the test's temp directory."""
    return tmp_path / "scratch"


@pytest.fixture
def store(store_url: str, scratch_root: Path) -> ModelStore:
    """A fresh, empty store of each backend (a module may define its own ``store``)."""
    return open_store(store_url, scratch_root=scratch_root)
