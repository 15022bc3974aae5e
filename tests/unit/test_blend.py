"""Blend specs, lineage, blended weights and mixed-style batches (stylenet.blend, multistyle)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from stylenet import GeneratorConfig, build_generator, image_to_tensor
from stylenet.blend import (
    BlendPart,
    BlendSpecError,
    Parent,
    StylesIncompatible,
    blend_state_dicts,
    common_ancestor,
    format_blend,
    lineage,
    parse_blend,
)
from stylenet.inference import stylize_tensor
from stylenet.multistyle import MultiStyle, norm_parameter_names, style_norms, trunk_digest

CONFIG = GeneratorConfig(width=0.25)


# --- specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("scream", [("scream", 1.0)]),
        ("a:0.7,b:0.3", [("a", 0.7), ("b", 0.3)]),
        ("a:7, b:3", [("a", 0.7), ("b", 0.3)]),  # normalized; blanks around parts are fine
        ("a,b", [("a", 0.5), ("b", 0.5)]),  # a weight left out counts 1
        ("a:1,b:1,c:1", [("a", 0.333), ("b", 0.333), ("c", 0.334)]),  # sums to 1 exactly
        ("a:2e-1,b:.8", [("a", 0.2), ("b", 0.8)]),
    ],
)
def test_blend_specs_are_read_and_normalized(spec: str, expected: list[tuple[str, float]]):
    parts = parse_blend(spec)
    assert [(p.style, p.weight) for p in parts] == expected
    assert sum(p.weight for p in parts) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "empty"),
        ("a:0.5,a:0.5", "named twice"),
        ("a:0,b:1", "must be > 0"),
        ("a:-1,b:1", "not a number"),
        ("a:x,b:1", "not a number"),
        ("a:nan,b:1", "not a number"),
        ("a:inf,b:1", "not a number"),
        ("a,b,c,d,e", "at most 4"),
        ("a,,b", "names no style"),
        ("A:1,b:1", "not a style id"),
        ("../etc", "not a style id"),
        ("a:1,b:0.00001", "leave it out"),
        ("a:1e308,b:1e308", "too large"),
    ],
)
def test_malformed_specs_say_what_is_wrong(spec: str, says: str):
    with pytest.raises(BlendSpecError, match=says) as caught:
        parse_blend(spec)
    assert caught.value.field == "style"


def test_canonical_spec_round_trips():
    parts = parse_blend("b:3,a:1")
    assert format_blend(parts) == "b:0.75,a:0.25"
    assert parse_blend(format_blend(parts)) == parts
    assert format_blend([BlendPart("scream", 1.0)]) == "scream"


# --- lineage ------------------------------------------------------------------------------


def test_lineage_follows_style_starts_through_a_lookup():
    records = {
        ("mid", 2): ("m" * 64, {"kind": "base", "sha256": "B" * 64}),
    }
    init = {"kind": "style", "sha256": "m" * 64, "style_id": "mid", "version": 2}
    chain = lineage("c" * 64, init, lambda sid, v: records.get((sid, v)))
    assert chain == ("c" * 64, "m" * 64, "B" * 64)
    # Without a lookup (or a pruned version) the chain stops at the recorded start.
    assert lineage("c" * 64, init) == ("c" * 64, "m" * 64)
    assert lineage("s" * 64, {"kind": "scratch"}) == ("s" * 64,)
    assert lineage("s" * 64, None) == ("s" * 64,)


def test_styles_share_a_base_or_are_refused():
    a = Parent("a", CONFIG, ("a1", "base"))
    b = Parent("b", CONFIG, ("b1", "mid", "base"))
    child = Parent("child", CONFIG, ("c1", "a1", "base"))
    assert common_ancestor([a, b]) == "base"
    assert common_ancestor([child, a]) == "a1"  # a child blends with its parent
    scratch = Parent("s", CONFIG, ("s1",), "trained from scratch")
    with pytest.raises(StylesIncompatible, match="share no base") as caught:
        common_ancestor([a, scratch])
    assert caught.value.reason == "lineage"
    assert "trained from scratch" in str(caught.value)
    wide = Parent("w", GeneratorConfig(width=0.5), ("w1", "base"))
    with pytest.raises(StylesIncompatible, match="structure") as caught:
        common_ancestor([a, wide])
    assert caught.value.reason == "structure"


# --- weights and forwards -------------------------------------------------------------------


def _family(count: int, seed: int = 0) -> tuple[torch.nn.Module, list[torch.nn.Module]]:
    """A base and styles that differ from it only in their instance norms' γ/β."""
    torch.manual_seed(seed)
    base = build_generator(CONFIG).eval()
    styles = []
    names = set(norm_parameter_names(base))
    for index in range(count):
        style = build_generator(CONFIG).eval()
        style.load_state_dict(base.state_dict())
        generator = torch.Generator().manual_seed(100 + index)
        with torch.no_grad():
            for name, param in style.named_parameters():
                if name in names:
                    noise = torch.randn(param.shape, generator=generator)
                    param.add_(0.5 * noise)
        styles.append(style)
    return base, styles


def test_blend_is_the_weighted_average_and_keeps_shared_tensors_exact():
    base, (a, b) = _family(2)
    blended = blend_state_dicts([a.state_dict(), b.state_dict()], [0.7, 0.3])
    names = set(norm_parameter_names(base))
    for key, value in blended.items():
        expected = 0.7 * a.state_dict()[key].float() + 0.3 * b.state_dict()[key].float()
        if key in names:
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        else:  # the shared convolutions: bit-identical, still the base's
            assert torch.equal(value, base.state_dict()[key])
    model = build_generator(CONFIG)
    model.load_state_dict(blended)
    assert trunk_digest(model) == trunk_digest(base) == trunk_digest(a)
    # Weights fine-tuned everywhere (convolutions too) average everywhere.
    c = build_generator(CONFIG)
    mixed = blend_state_dicts([a.state_dict(), c.state_dict()], [0.5, 0.5])
    key = "down.0.0.1.weight"
    torch.testing.assert_close(
        mixed[key], 0.5 * a.state_dict()[key] + 0.5 * c.state_dict()[key], rtol=0, atol=1e-7
    )
    with pytest.raises(ValueError, match="one weight per generator"):
        blend_state_dicts([a.state_dict()], [0.5, 0.5])


def test_trunk_digest_tells_shared_convolutions_apart():
    base, (a, b) = _family(2)
    assert trunk_digest(a) == trunk_digest(b) == trunk_digest(base)
    other = build_generator(CONFIG)
    assert trunk_digest(other) != trunk_digest(a)
    assert trunk_digest(build_generator(GeneratorConfig(width=0.25, norm="batch"))) is None


def test_a_mixed_batch_equals_each_request_run_alone(photo: Image.Image):
    base, styles = _family(3)
    crops = [photo.crop((x, 40, x + 96, 136)).resize((80, 64)) for x in (0, 150, 300, 220)]
    batch = torch.cat([image_to_tensor(c) for c in crops])
    which = [0, 2, 1, 0]  # three styles, one twice, in one forward
    multi = MultiStyle(base)
    with torch.inference_mode():
        mixed = stylize_tensor(
            batch, _Bound(multi, [style_norms(styles[i]) for i in which]), dtype=torch.float32
        )
        for index, style in enumerate(which):
            alone = stylize_tensor(batch[index : index + 1], styles[style], dtype=torch.float32)
            difference = (mixed[index : index + 1] - alone).abs().max().item()
            assert difference <= 1.0, (index, difference)  # within 1/255
        # Not the same as the base's own γ/β: the per-sample norms are really used.
        plain = stylize_tensor(batch[:1], base, dtype=torch.float32)
        assert (mixed[:1] - plain).abs().max().item() > 5.0


class _Bound(torch.nn.Module):
    """A MultiStyle with its samples' norms fixed, to go through stylize_tensor."""

    def __init__(self, multi: MultiStyle, norms: list) -> None:
        super().__init__()
        self.multi = multi
        self.norms = norms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.multi(x, self.norms)
