from __future__ import annotations

import pytest

from model_store import InvalidStyleId, generate_style_id, is_valid_style_id, validate_style_id
from model_store.ids import is_valid_blob_name, is_valid_incarnation, new_incarnation


def test_generated_ids_are_valid_short_and_distinct() -> None:
    ids = {generate_style_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 12 and is_valid_style_id(i) for i in ids)


@pytest.mark.parametrize("good", ["a", "0", "mosaic", "starry-night_2", "a" * 64])
def test_valid_ids(good: str) -> None:
    assert validate_style_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "../etc",
        "a/../b",
        "/abs",
        "a/b",
        "a\\b",
        "C:x",
        "a.json",
        "Mosaic",
        "-lead",
        "_lead",
        "a b",
        "a\n",
        "a\x00b",
        "é",
        "ａ",  # fullwidth look-alike
        "%2e%2e",
        "a" * 65,
        None,
        5,
        b"abc",
    ],
)
def test_invalid_ids(bad: object) -> None:
    assert not is_valid_style_id(bad)
    with pytest.raises(InvalidStyleId) as exc:
        validate_style_id(bad)
    assert exc.value.style_id == bad


def test_incarnations() -> None:
    tag = new_incarnation()
    assert is_valid_incarnation(tag)
    assert not is_valid_incarnation("../" + tag[3:])
    assert not is_valid_incarnation(tag.upper())


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("weights/" + "a" * 64 + ".safetensors", True),
        ("style-0123456789abcdef.png", True),
        ("preview-0123456789abcdef.webp", True),
        ("weights/../../etc/passwd", False),
        ("/weights/" + "a" * 64 + ".safetensors", False),
        ("weights/" + "a" * 64 + ".pt", False),
        ("weights/" + "a" * 64 + ".pkl", False),
        ("style-0123456789abcdef.png/..", False),
        ("manifest.json", False),
    ],
)
def test_blob_names(name: str, ok: bool) -> None:
    assert is_valid_blob_name(name) is ok
