"""Joint (conditional instance norm) base training, and norm-first adaptation, real VGG19."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_base_training import (  # noqa: F401 (fixtures)
    TINY,
    Stop,
    _assert_same,
    _state,
    paintings,
    photos,
)

from stylenet import InvalidParams, TrainParams, load_generator, train
from stylenet.base import BaseParams, BaseProgress, BaseResult, painting_index, train_base
from stylenet.cli import main
from stylenet.conditional import joint_learning_rate, mean_norms, norm_parameter_names

JOINT = {**TINY, "method": "joint", "outer_steps": 6}


@pytest.fixture(scope="module")
def joint(paintings: list[Path], photos: Path) -> BaseResult:  # noqa: F811
    reports: list[BaseProgress] = []
    result = train_base(paintings, photos, BaseParams(**JOINT), on_progress=reports.append)
    result.metrics["reports"] = reports
    return result


def test_each_painting_learns_its_own_norms_over_shared_convolutions(
    joint: BaseResult,
    paintings: list[Path],  # noqa: F811
) -> None:
    reports = joint.metrics["reports"]
    assert [r.outer_step for r in reports] == list(range(1, 7))
    assert [r.meta_lr for r in reports] == [joint_learning_rate(1e-3, i, 6) for i in range(6)]
    assert reports[0].meta_lr == 1e-3 and reports[-1].meta_lr < 1e-3
    assert joint.metrics["method"] == "joint"
    table = joint.norms
    assert table is not None and len(table.table) == len(paintings)
    names = norm_parameter_names(joint.generator)
    assert set(table.table[0]) == set(names)
    # Every painting visited (two epochs of three) moved its γ/β away from the others'.
    visited = {painting_index(0, 3, i) for i in range(6)}
    assert visited == {0, 1, 2}
    for a in range(3):
        for b in range(a + 1, 3):
            assert any(not torch.equal(table.table[a][n], table.table[b][n]) for n in names), (a, b)
    # The base holds the mean γ/β: where a new painting starts.
    base = dict(joint.generator.named_parameters())
    for name, value in mean_norms(table).items():
        assert torch.allclose(base[name], value), name


def test_a_resumed_joint_run_reaches_the_same_weights(
    tmp_path: Path,
    joint: BaseResult,
    paintings: list[Path],  # noqa: F811
    photos: Path,  # noqa: F811
) -> None:
    def crash(progress: BaseProgress) -> None:
        if progress.outer_step == 5:  # after the checkpoint of step 4, before the last
            raise Stop

    params = BaseParams(**{**JOINT, "checkpoint_every": 2})
    with pytest.raises(Stop):
        train_base(paintings, photos, params, checkpoint_dir=tmp_path, on_progress=crash)
    resumed = train_base(paintings, photos, params, checkpoint_dir=tmp_path)
    assert resumed.metrics["resumed_from"] == 4
    # Exact: the convolutions' Adam moments and every painting's own moments came back.
    _assert_same(joint.generator, resumed.generator)
    assert resumed.norms is not None and joint.norms is not None
    for row, again in zip(joint.norms.table, resumed.norms.table, strict=True):
        for name in row:
            assert torch.equal(row[name], again[name]), name


def test_joint_needs_instance_norm() -> None:
    with pytest.raises(InvalidParams) as info:
        BaseParams.from_dict({**JOINT, "norm": "batch"})
    assert info.value.field == "norm"
    with pytest.raises(InvalidParams) as info:
        TrainParams.from_dict({"norm": "batch", "norm_first_steps": 5})
    assert info.value.field == "norm_first_steps"


def test_norm_first_steps_train_only_the_norms_then_everything(
    tmp_path: Path,
    photos: Path,  # noqa: F811
    paintings: list[Path],  # noqa: F811
) -> None:
    small = {"image_size": 64, "style_size": 64, "batch_size": 2, "width": 0.25, "holdout": 0}
    torch.manual_seed(0)
    start = _state(load_generator_from_params(TrainParams(**small)))
    norms = set(norm_parameter_names(load_generator_from_params(TrainParams(**small))))

    def run(iterations: int, first: int, folder: Path | None = None) -> torch.nn.Module:
        params = TrainParams(**small, iterations=iterations, norm_first_steps=first)
        return train(
            paintings[0], photos, params, init_state=start, checkpoint_dir=folder
        ).generator

    only = _state(run(3, 3))
    moved = {k for k in only if not torch.equal(only[k], start[k])}
    assert moved and moved <= norms  # the convolutions did not move, the norms did
    thawed = _state(run(5, 3))
    assert any(not torch.equal(thawed[k], start[k]) for k in set(thawed) - norms)
    # A resume freezes by the iteration alone: the same weights as one straight run.
    folder = tmp_path / "ckpt"

    def crash(progress) -> None:  # type: ignore[no-untyped-def]
        if progress.iteration == 3:
            raise Stop

    params = TrainParams(
        **small, iterations=5, norm_first_steps=3, checkpoint_every=2, progress_every=1
    )
    with pytest.raises(Stop):
        train(
            paintings[0], photos, params, init_state=start, checkpoint_dir=folder, on_progress=crash
        )
    resumed = _state(
        train(paintings[0], photos, params, init_state=start, checkpoint_dir=folder).generator
    )
    for key in thawed:
        assert torch.equal(thawed[key], resumed[key]), key


def load_generator_from_params(params: TrainParams) -> torch.nn.Module:
    from stylenet import build_generator

    return build_generator(params.generator_config)


def test_the_cli_writes_the_base_and_its_norm_table(
    tmp_path: Path,
    paintings: list[Path],  # noqa: F811
    photos: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "base.safetensors"
    args = ["base", "train", "--styles", *map(str, paintings), "--content", str(photos)]
    args += ["--out", str(out), "--method", "joint", "--quiet", "--outer-steps", "3"]
    for key in ("image_size", "style_size", "batch_size", "width", "holdout", "inner_steps"):
        args += [f"--{key.replace('_', '-')}", str(TINY[key])]
    assert main(args) == 0
    generator, info = load_generator(out)
    assert info.metrics["kind"] == "base" and info.metrics["method"] == "joint"
    table = load_file(str(out.with_suffix(".norms.safetensors")))
    names = norm_parameter_names(generator)
    assert {k.split(".", 1)[1] for k in table} == set(names)
    assert {int(k.split(".", 1)[0]) for k in table} == {0, 1, 2}
    capsys.readouterr()
    assert np.isfinite(float(table[f"0.{names[0]}"].sum()))


def test_a_new_painting_starts_from_the_row_its_loss_ranks_first(
    joint: BaseResult,
    paintings: list[Path],  # noqa: F811
    photos: Path,  # noqa: F811
) -> None:
    from stylenet.conditional import rank_norms, with_norms
    from stylenet.train import build_loss, style_tensor

    assert joint.norms is not None
    rows = joint.norms.table
    params = BaseParams(**JOINT).train_params
    loss = build_loss(params, torch.device("cpu"), None)
    loss.set_style(style_tensor(paintings[1], 64))
    generator = joint.generator
    before = _state(generator)
    batch = torch.rand(2, 3, 64, 64) * 255
    losses = rank_norms(generator, rows, loss, batch)
    assert len(losses) == len(rows) and all(np.isfinite(losses))
    _assert_same_state(before, _state(generator))  # its own γ/β back
    # Each loss is that of the generator holding the row's γ/β.
    start = with_norms(before, [rows[2]], [1.0])
    generator.load_state_dict(start)
    with torch.no_grad():
        assert float(loss(generator(batch), batch).total) == pytest.approx(losses[2], rel=1e-5)
    generator.load_state_dict(before)
    # A blend of rows is their weighted sum; the convolutions are the base's.
    mixed = with_norms(before, rows[:2], [0.25, 0.75])
    name = norm_parameter_names(generator)[0]
    assert torch.allclose(mixed[name], 0.25 * rows[0][name] + 0.75 * rows[1][name])
    convs = set(before) - set(rows[0])
    assert all(torch.equal(mixed[k], before[k]) for k in convs)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_gives_the_base_so_far_and_its_table(
    tmp_path: Path,
    paintings: list[Path],  # noqa: F811
    photos: Path,  # noqa: F811
) -> None:
    from stylenet.conditional import (
        CHECKPOINT_NAME,
        base_state_from_checkpoint,
        table_from_checkpoint,
    )

    params = BaseParams(**{**JOINT, "outer_steps": 3, "checkpoint_every": 3})
    result = train_base(paintings, photos, params, checkpoint_dir=tmp_path)
    assert result.norms is not None
    table = table_from_checkpoint(tmp_path / CHECKPOINT_NAME)
    for row, expected in zip(table, result.norms.table, strict=True):
        assert all(torch.equal(row[k], expected[k]) for k in expected)
    state = base_state_from_checkpoint(tmp_path / CHECKPOINT_NAME)
    final = _state(result.generator)
    assert state.keys() == final.keys()
    for key in final:
        assert torch.allclose(state[key], final[key]), key


def test_a_shipped_joint_base_starts_a_style_from_its_best_row(
    tmp_path: Path,
    joint: BaseResult,
    paintings: list[Path],  # noqa: F811
    photos: Path,  # noqa: F811
) -> None:
    import hashlib
    import json

    from stylenet.base import save_base
    from stylenet.conditional import save_norm_table, with_norms
    from stylenet.train import ADAPT_NORM_FIRST_STEPS
    from stylenet.warmstart import choose_init, find_base

    assert joint.norms is not None
    params = BaseParams(**JOINT)
    folder = tmp_path / "bases"
    folder.mkdir()
    metrics = {k: v for k, v in joint.metrics.items() if k != "reports"}
    digest = save_base(folder / "b.safetensors", BaseResult(joint.generator, metrics), params)
    table = folder / "b.norms.safetensors"
    save_norm_table(table, joint.norms, ["a", "b", "c"], ["0", "1", "2"])
    entry = {
        "file": "b.safetensors",
        "sha256": digest,
        "config": params.train_params.generator_config.to_dict(),
        "norms": table.name,
        "norms_sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps({"bases": [entry]}))
    config = params.train_params.generator_config
    choice = choose_init("auto", config, base=find_base(config, folder))
    assert choice.info["kind"] == "base" and choice.norms is not None
    assert len(choice.norms) == 3 and "note" not in choice.info

    # The run starts from the best row; norm-first steps as measured best (or as asked).
    small = {"image_size": 64, "style_size": 64, "batch_size": 2, "width": 0.25, "holdout": 0}
    run = TrainParams(**small, iterations=2)
    assert run.norm_first_steps is None
    where = {"init_state": choice.state, "init_info": choice.info, "init_norms": choice.norms}
    result = train(paintings[0], photos, run, **where)
    row = result.metrics["init"]["norm_row"]
    assert row["rows"] == 3 and 0 <= row["index"] < 3 and np.isfinite(row["loss"])
    assert result.metrics["norm_first_steps"] == ADAPT_NORM_FIRST_STEPS
    only = TrainParams(**small, iterations=2, norm_first_steps=5)
    trained = _state(train(paintings[0], photos, only, **where).generator)
    names = set(choice.norms[0])
    assert all(torch.equal(trained[k], choice.state[k]) for k in set(trained) - names)
    best = with_norms(choice.state, [choice.norms[row["index"]]], [1.0])
    assert any(not torch.equal(trained[k], best[k]) for k in names)  # γ/β trained from it
    # Without a table, unset is 0: every weight trains from the first step.
    plain = train(paintings[0], photos, run, init_state=choice.state)
    assert plain.metrics["norm_first_steps"] == 0

    # A table that does not match its sha256 is refused with a note; the base still serves.
    table.write_bytes(table.read_bytes()[:-1] + b" ")
    tampered = choose_init("base", config, base=find_base(config, folder))
    assert tampered.info["kind"] == "base" and tampered.norms is None
    assert "γ/β table" in tampered.info["note"]
