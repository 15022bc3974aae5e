"""API keys (401 / 403) and settings validation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError
from service_testing import assert_error, image_bytes

from service import ServiceSettings, load_settings

MakeClient = Callable[..., AbstractContextManager[TestClient]]
KEY = "s3cret-key-one"
OTHER_KEY = "s3cret-key-two"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _create(client: TestClient, style_png: bytes, headers: dict[str, str] | None = None):
    files = {"image": ("s.png", style_png, "image/png")}
    return client.post("/styles", files=files, data={"name": "x"}, headers=headers or {})


def _stylize(client: TestClient, photo: Image.Image, headers: dict[str, str] | None = None):
    data = image_bytes(photo.resize((32, 32)), "PNG")
    return client.post(
        "/stylize",
        params={"style": "alpha"},
        content=data,
        headers={"content-type": "image/png", **(headers or {})},
    )


def test_keys_guard_creating_training_and_deleting(
    make_client: MakeClient, style_png: bytes, photo
):
    with make_client(api_keys=[KEY, OTHER_KEY]) as client:
        r = _create(client, style_png)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(_create(client, style_png, _bearer("wrong-key-123")), 403, "forbidden")
        assert_error(
            _create(client, style_png, {"Authorization": f"Basic {KEY}"}), 401, "unauthorized"
        )
        created = _create(client, style_png, _bearer(OTHER_KEY))
        assert created.status_code == 202
        sid = created.json()["id"]
        for action in ("cancel", "train"):
            assert_error(client.post(f"/styles/{sid}/{action}"), 401, "unauthorized")
            assert_error(
                client.post(f"/styles/{sid}/{action}", headers=_bearer("nope-nope")),
                403,
                "forbidden",
            )
        # A valid key that is not the style's owner (tests/.../test_service_limits.py).
        assert_error(client.post(f"/styles/{sid}/cancel", headers=_bearer(KEY)), 403, "not_owner")
        r = client.post(f"/styles/{sid}/cancel", headers=_bearer(OTHER_KEY))
        assert r.status_code == 200 and r.json()["status"] == "canceled"
        assert_error(client.delete(f"/styles/{sid}"), 401, "unauthorized")
        assert_error(
            client.delete(f"/styles/{sid}", headers=_bearer("nope-nope")), 403, "forbidden"
        )
        assert client.delete(f"/styles/{sid}", headers=_bearer(OTHER_KEY)).status_code == 204
        # Reading and stylizing stay open unless configured otherwise.
        assert client.get("/styles").status_code == 200
        assert _stylize(client, photo).status_code == 200
        spec = client.get("/openapi.json").json()
        assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_stylize_can_require_a_key(make_client: MakeClient, photo):
    with make_client(api_keys=[KEY], stylize_requires_key=True) as client:
        assert_error(_stylize(client, photo), 401, "unauthorized")
        assert_error(_stylize(client, photo, _bearer("x" * 12)), 403, "forbidden")
        assert _stylize(client, photo, _bearer(KEY)).status_code == 200
        assert client.get("/healthz").status_code == 200  # health stays open


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STYLIZE_API_KEYS", f"{KEY}, {OTHER_KEY}")
    monkeypatch.setenv("STYLIZE_WARM_STYLES", '["alpha", "beta"]')
    monkeypatch.setenv("STYLIZE_WARM_SIDES", "256,512")
    monkeypatch.setenv("STYLIZE_MAX_BATCH_SIZE", "6")
    monkeypatch.setenv("STYLIZE_MODEL_STORE", "file://./data/models")
    settings = load_settings()
    assert [k.get_secret_value() for k in settings.api_keys] == [KEY, OTHER_KEY]
    assert KEY not in repr(settings)  # keys are secrets
    assert settings.warm_styles == ["alpha", "beta"]
    assert settings.warm_sides == [256, 512]
    assert settings.max_batch_size == 6
    assert settings.model_store.startswith("file:///") and settings.model_store.endswith(
        "/data/models"
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"stylize_requires_key": True},
        {"api_keys": ["short"]},
        {"max_side_default": 4096, "max_side_limit": 2048},
        {"max_batch_size": 0},
        {"queue_size": 0},
        {"device": "tpu"},
        {"warm_styles": ["../x"]},
        {"request_timeout_s": 0},
        {"max_pixels": 1_000_000, "max_side_limit": 2048},
        {"cpu_dtype": "float16"},
    ],
)
def test_invalid_settings_fail_fast(overrides: dict):
    with pytest.raises(ValidationError):
        ServiceSettings(**overrides)


def test_the_service_never_imports_the_worker(tmp_path: Path):
    # A fresh interpreter: what importing and building the app pulls in, and nothing else.
    code = (
        "import sys\n"
        "from service import create_app, ServiceSettings\n"
        "import service.routes, service.training, service.runtime\n"
        f"create_app(ServiceSettings(model_store={str(tmp_path)!r}))\n"
        "bad = [m for m in sys.modules if m == 'worker' or m.startswith('worker.')]\n"
        "assert not bad, bad\n"
    )
    repo = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, timeout=120)
