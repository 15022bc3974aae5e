"""onnxruntime-web for the page (service.webvendor) and the policy its worker runs under."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from service import webvendor
from service.security_headers import PAGE_POLICY, WORKER_POLICY, policy_for


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "vendor" / "onnxruntime-web"
    with pytest.raises(ValueError, match="sha512"):
        webvendor.install(folder, tarball=b"not the onnxruntime-web release")
    assert not folder.exists()
    assert not webvendor.installed(folder)
    data = b"some bytes"
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    webvendor.check_integrity(data, integrity)  # the registry's format, accepted


def test_only_the_on_device_worker_may_compile_webassembly() -> None:
    assert policy_for("/static/ondevice-worker.js") == WORKER_POLICY
    assert "'wasm-unsafe-eval'" in WORKER_POLICY
    for path in ("/", "/static/ondevice.js", "/static/vendor/onnxruntime-web/ort.wasm.min.mjs"):
        assert policy_for(path) == PAGE_POLICY
    assert "wasm" not in PAGE_POLICY
    # Otherwise the same policy: nothing else is loosened.
    assert WORKER_POLICY.replace(" 'wasm-unsafe-eval'", "") == PAGE_POLICY
