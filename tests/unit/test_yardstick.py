"""The yardstick: r on synthetic trajectories, a real optimization run, train()'s report."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from stylenet import InvalidParams, TrainParams, image_to_tensor, samples
from stylenet.data import center_crop
from stylenet.generators import build_generator
from stylenet.train import build_loss
from stylenet.yardstick import (
    optimization_relative_score,
    optimization_trajectory,
    pareto_front,
    yardstick,
)

# Content rises from 0 while style falls, as optimization from the photo does.
TRAJECTORY = [(0.0, 100.0), (1.0, 50.0), (2.0, 20.0), (4.0, 10.0), (8.0, 5.0)]


def test_bracketing_steps_are_interpolated_geometrically_in_style() -> None:
    score = optimization_relative_score(TRAJECTORY, 3.0, 20.0)
    # halfway between steps 2 (c 2, s 20) and 3 (c 4, s 10): sqrt(20 * 10)
    assert score["style_at_content"] == pytest.approx(math.sqrt(200), rel=1e-5)
    assert score["r"] == pytest.approx(math.sqrt(200) / 20, rel=1e-5)
    assert score["bracket"] == [2, 3]
    assert not score["extrapolated"] and score["bound"] is None
    assert score["equivalent_steps"] == 2  # the first step whose style is <= 20


def test_a_generator_on_the_trajectory_scores_one_and_a_worse_one_less() -> None:
    for step, (content, style) in enumerate(TRAJECTORY):
        score = optimization_relative_score(TRAJECTORY, content, style)
        assert score["r"] == pytest.approx(1.0), step
        assert score["equivalent_steps"] == step
    worse = optimization_relative_score(TRAJECTORY, 2.0, 80.0)
    assert worse["r"] == pytest.approx(0.25) and worse["equivalent_steps"] == 1
    better = optimization_relative_score(TRAJECTORY, 2.0, 10.0)
    assert better["r"] == pytest.approx(2.0) and better["equivalent_steps"] == 3


def test_content_never_reached_uses_the_last_step_as_an_upper_bound() -> None:
    score = optimization_relative_score(TRAJECTORY, 20.0, 10.0)
    assert score["style_at_content"] == 5.0 and score["r"] == pytest.approx(0.5)
    assert score["extrapolated"] and score["bound"] == "upper"
    assert score["bracket"] == [4]
    assert optimization_relative_score(TRAJECTORY, 20.0, 1.0)["equivalent_steps"] is None


def test_content_below_the_first_point_is_a_lower_bound() -> None:
    score = optimization_relative_score(TRAJECTORY[1:], 0.5, 25.0)
    assert score["style_at_content"] == 50.0 and score["r"] == pytest.approx(2.0)
    assert score["extrapolated"] and score["bound"] == "lower"


def test_non_monotonic_trajectories_use_the_lower_envelope() -> None:
    # Step 2 overshoots (style up, content down); step 3 is dominated by step 1.
    bumpy = [(0.0, 100.0), (2.0, 40.0), (1.5, 60.0), (3.0, 45.0), (4.0, 10.0), (3.5, 30.0)]
    assert [p[0] for p in pareto_front(bumpy)] == [0, 2, 1, 5, 4]
    # c = 3.0 lies between step 1 (c 2, s 40) and step 5 (c 3.5, s 30), never on step 3.
    score = optimization_relative_score(bumpy, 3.0, 40.0)
    expected = math.exp(math.log(40) + (1 / 1.5) * (math.log(30) - math.log(40)))
    assert score["style_at_content"] == pytest.approx(expected, rel=1e-5)
    assert score["bracket"] == [1, 5]
    # The envelope never rises with content, so neither does s_opt.
    grid = [optimization_relative_score(bumpy, c / 4, 1.0)["r"] for c in range(20)]
    assert all(a >= b for a, b in itertools.pairwise(grid))


def test_degenerate_inputs() -> None:
    assert optimization_relative_score(TRAJECTORY, 3.0, 0.0)["r"] is None
    assert optimization_relative_score(TRAJECTORY, 3.0, math.nan)["r"] is None
    assert optimization_relative_score([(0.0, 1.0), (math.nan, 0.5)], 1.0, 1.0)["r"] == 1.0
    with pytest.raises(ValueError):
        optimization_relative_score([], 1.0, 1.0)
    with pytest.raises(ValueError):
        optimization_relative_score(TRAJECTORY, math.inf, 1.0)


@pytest.fixture(scope="module")
def tiny_loss(style_image):
    params = TrainParams(image_size=64, style_size=64)
    loss = build_loss(params, torch.device("cpu"), None)
    loss.set_style(image_to_tensor(style_image))
    return loss


@pytest.fixture(scope="module")
def tiny_photo() -> torch.Tensor:
    return center_crop(samples.sample("coffee").resize((96, 64)), 64)


def test_real_optimization_raises_content_from_zero_and_lowers_style(tiny_loss, tiny_photo) -> None:
    run = optimization_trajectory(tiny_loss, tiny_photo, 8)
    assert len(run.trajectory) == 9 and run.image.shape == tiny_photo.shape
    contents, styles = zip(*run.trajectory, strict=True)
    assert contents[0] == pytest.approx(0.0, abs=1e-6) and contents[-1] > contents[1] > 1e-3
    assert styles[-1] < 0.7 * styles[0]
    assert run.final["style"] == styles[-1]
    # The content cache is undone: the loss measures other photos again.
    assert "content_features" not in vars(tiny_loss)


def test_the_style_ramp_walks_further_along_the_trade_off(tiny_loss, tiny_photo) -> None:
    plain = optimization_trajectory(tiny_loss, tiny_photo, 12, style_ramp=1.0)
    ramped = optimization_trajectory(tiny_loss, tiny_photo, 12, style_ramp=64.0)
    # Both are measured under the loss's own weights and start at the photo itself.
    assert plain.trajectory[0] == pytest.approx(ramped.trajectory[0])
    # The ramped run trades more content for style: it ends at a higher content loss and
    # a lower style loss, so it brackets more stylized generators.
    assert ramped.final["content"] > plain.final["content"]
    assert ramped.final["style"] < plain.final["style"]


def test_yardstick_report_is_json_able(tiny_loss, tiny_photo) -> None:
    torch.manual_seed(0)
    generator = build_generator(TrainParams(width=0.25).generator_config)
    report = yardstick(
        generator, tiny_loss, [tiny_photo, tiny_photo], 4, names=["a", "b"], style_size=64
    )
    json.dumps(report, allow_nan=False)
    assert [e["name"] for e in report["images"]] == ["a", "b"]
    assert report["steps"] == 4 and report["image_size"] == 64 and report["style_size"] == 64
    assert all(e["r"] is not None and e["r"] > 0 for e in report["images"])
    assert report["r_mean"] == pytest.approx(report["images"][0]["r"], rel=1e-3)


def test_params_validate_yardstick_steps() -> None:
    assert TrainParams().yardstick_steps == 200 and TrainParams().holdout == 4
    assert TrainParams.from_dict({"yardstick_steps": 0}).yardstick_steps == 0
    for bad in (-1, 10_001, "many"):
        with pytest.raises(InvalidParams):
            TrainParams.from_dict({"yardstick_steps": bad})
