"""The one strict params schema (issue 14 items 8-9, issue 15 items 4 and 10)."""

from __future__ import annotations

import pytest

from stylenet import InvalidParams, TrainParams
from stylenet.params import LOSSNETS, MAX_SEED, json_schema


@pytest.mark.parametrize(
    ("bad", "field", "says"),
    [
        ({"iterations": 1.5}, "iterations", "valid integer"),
        ({"iterations": "many"}, "iterations", "valid integer"),  # type before range
        ({"iterations": True}, "iterations", "valid integer"),
        ({"seed": "abc"}, "seed", "valid integer"),
        ({"seed": 10**5000 // 10**4000}, "seed", str(MAX_SEED)),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
        ({"style_weight": float("inf")}, "style_weight", "finite"),
        ({"lr": float("nan")}, "lr", "finite"),
        ({"content_layers": {"relu4_2": float("inf")}}, "content_layers.relu4_2", "finite"),
        ({"width": "1"}, "width", "valid number"),
        ({"lossnet": "../../../../../etc/passwd"}, "lossnet", "keras-vgg19"),
        ({"lossnet": "/root/.cache/stylize/lossnet/keras-vgg19"}, "lossnet", "keras-vgg19"),
        ({"preset": "fast"}, "preset", "web page's effort level"),
        ({"preset": "x"}, "preset", "'ulyanov' or 'johnson'"),
        ({"style_layers": {"relu9_9": 1.0}}, "style_layers", "unknown layers"),
        ({"colour": 1}, "colour", "unknown parameter"),
        ([1, 2], "params", "JSON object"),
    ],
)
def test_strict_schema_names_the_field(bad: object, field: str, says: str):
    with pytest.raises(InvalidParams) as info:
        TrainParams.from_dict(bad)  # type: ignore[arg-type]
    assert info.value.field == field
    assert says in str(info.value)
    assert "not supported between" not in str(info.value)  # issue 15 #4: no comparison error


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"style_weight": Infinity}', "style_weight"),
        ('{"lr": 1e400}', "lr"),
        ('{"seed": ' + "9" * 5000 + "}", "params"),
        ('{"seed": ' + "9" * 1000 + "}", "seed"),
        ("[" * 100_000, "params"),
        ("{not json", "params"),
    ],
)
def test_json_text_is_parsed_with_bounds(text: str, field: str):
    with pytest.raises(InvalidParams) as info:
        TrainParams.from_json(text)
    assert info.value.field == field


def test_valid_params_round_trip_and_ints_are_numbers():
    params = TrainParams.from_dict({"width": 1, "lr": 1, "style_layers": {"relu1_1": 2}})
    assert params.width == 1.0 and isinstance(params.width, float)
    assert TrainParams.from_dict(params.to_dict()) == params
    assert TrainParams.from_json('{"iterations": 10}').iterations == 10
    for name in LOSSNETS:
        assert TrainParams.from_dict({"lossnet": name}).resolved()["lossnet"] == name


def test_json_schema_is_what_is_enforced():
    schema = json_schema()
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert props["iterations"]["type"] == "integer" and props["iterations"]["maximum"] == 200_000
    assert props["seed"]["maximum"] == MAX_SEED
    assert set(props["lossnet"]["anyOf"][0]["enum"]) == set(LOSSNETS)
    assert props["preset"]["enum"] == ["ulyanov", "johnson"]
