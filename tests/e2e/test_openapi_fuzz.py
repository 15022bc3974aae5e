"""The OpenAPI document against a running ``python -m service``: fuzzed, and used.

schemathesis over the whole document, and a client generated from it.

Every operation is called with generated requests (valid and invalid, a bounded number
each) with a valid API key and without one, and the default checks must pass: no 5xx, status codes,
content types, headers and bodies as documented (issue 14 "Done when", issue 15 #11).
The counts of requests and 5xx are printed at the end (run with ``-s`` to see them).
"""

from __future__ import annotations

import importlib
import io
import itertools
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.specs.openapi.checks import positive_data_acceptance
from service_testing import build_store, image_bytes, running_service

KEY = "fuzz-test-key-1"
# Per operation and key: 25 × 13 operations × 2 stay well under a minute on 2 cores;
# FUZZ_EXAMPLES=500 for a longer probe (12,006 requests in 94 s; issue 14's closing note).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def base_url(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_generator_bytes: bytes,
    style_image: Image.Image,
    redis_url: str,
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz")
    env = {
        "STYLIZE_MODEL_STORE": build_store(
            root, tiny_generator_bytes, image_bytes(style_image, "PNG")
        ),
        "STYLIZE_REDIS_URL": redis_url,
        "STYLIZE_API_KEYS": KEY,
        "STYLIZE_MAX_UPLOAD_BYTES": "2000000",
        "STYLIZE_EVENTS_MAX_S": "1",  # an event stream of a pending style ends quickly
        "STYLIZE_REQUEST_TIMEOUT_S": "10",
    }
    with running_service(root, env) as base:
        yield base
    print(f"\nschemathesis: {sum(SEEN.values())} requests, by status class {dict(SEEN)}")


def _fuzz(operation: Any, base_url: str, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same requests every run: a failure is reproducible
        database=None,
    )
    def call(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=headers)
        SEEN[f"{response.status_code // 100}xx"] += 1
        # Not "schema-valid data is accepted": whether bytes are a usable image (a
        # decodable JPEG of at least 32 px) is beyond what a schema can say.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    call()


def test_api_conforms_to_its_openapi_document(base_url: str) -> None:
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 13
    failures: list[str] = []
    keys = ({"Authorization": f"Bearer {KEY}"}, {})
    for operation, headers in itertools.product(operations, keys):
        try:
            _fuzz(operation, base_url, headers)
        except Exception as exc:  # collect every operation's failure, then fail once
            failures.append(f"{operation.label} (key: {bool(headers)}): {exc}"[:3000])
    assert not failures, "\n\n".join(failures)


#: The generator handles binary bodies as application/octet-stream only; the service
#: takes that for a raw image and answers images, which the client returns as bytes.
CLIENT_CONFIG = """content_type_overrides:
  image/jpeg: application/octet-stream
  image/png: application/octet-stream
  image/webp: application/octet-stream
"""


def test_a_generated_client_round_trips(
    base_url: str, tmp_path: Path, photo: Image.Image, monkeypatch: pytest.MonkeyPatch
):
    # Issue 15 #11: a client generated from the document compiles and works.
    spec = tmp_path / "openapi.json"
    spec.write_bytes(httpx.get(f"{base_url}/openapi.json").content)
    (tmp_path / "config.yaml").write_text(CLIENT_CONFIG)
    bin_dir = Path(sys.executable).parent
    generated = subprocess.run(
        [
            *(bin_dir / "openapi-python-client", "generate", "--path", spec, "--meta", "none"),
            *("--output-path", tmp_path / "stylize_client", "--config", tmp_path / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "WARNING" not in generated.stdout, generated.stdout  # nothing left out
    monkeypatch.syspath_prepend(str(tmp_path))
    client_module = importlib.import_module("stylize_client")
    listing = importlib.import_module("stylize_client.api.styles.list_styles_styles_get")
    stylize = importlib.import_module("stylize_client.api.stylize.stylize_stylize_post")
    types = importlib.import_module("stylize_client.types")

    client = client_module.Client(base_url=base_url, raise_on_unexpected_status=True)
    page = listing.sync(client=client)
    assert {"alpha", "beta"} <= {style.id for style in page.items}
    assert all(style.links.self_ == f"/styles/{style.id}" for style in page.items)

    jpeg = image_bytes(photo, "JPEG", quality=90)

    def body() -> object:
        return types.File(payload=io.BytesIO(jpeg), mime_type="application/octet-stream")

    response = stylize.sync_detailed(client=client, body=body(), style="alpha", max_side=64)
    assert response.status_code == 200
    assert response.headers["x-style-id"] == "alpha"
    assert max(Image.open(io.BytesIO(response.content)).size) == 64
    refused = stylize.sync_detailed(client=client, body=body(), style="nope")
    assert refused.status_code == 404 and refused.parsed.error.code == "style_not_found"
