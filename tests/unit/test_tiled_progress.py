"""Progress and stopping of the tiled forward (stylenet.tiled's ``progress``): every band
is reported against a total counted beforehand, and the run stops where the callback
raises (how the service gives up a canceled request)."""

from __future__ import annotations

import pytest
import torch

from stylenet.generators import build_generator
from stylenet.tiled import forward_tiled


class Stop(Exception):
    pass


def _net(arch: str, **config: object) -> torch.nn.Module:
    torch.manual_seed(3)
    return build_generator(arch=arch, **config).eval()


@pytest.mark.parametrize(
    ("arch", "config"),
    [("residual", {"width": 0.25}), ("multiscale", {"width": 0.5, "scales": 3})],
)
@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_every_band_is_reported_against_the_total(arch: str, config: dict, storage: str) -> None:
    net = _net(arch, **config)
    image = torch.rand(1, 3, 70, 53, generator=torch.Generator().manual_seed(1)) * 255
    seen: list[tuple[int, int]] = []
    out = forward_tiled(net, image, tile=16, storage=storage, progress=lambda *a: seen.append(a))
    total = seen[0][1]
    assert total > 10  # many bands at this tile
    assert seen == [(done, total) for done in range(1, total + 1)]
    assert torch.equal(out, forward_tiled(net, image, tile=16, storage=storage))


def test_the_run_stops_at_the_band_whose_report_raises() -> None:
    net = _net("residual", width=0.25)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 255
    calls: list[int] = []

    def report(done: int, total: int) -> None:
        calls.append(done)
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        forward_tiled(net, image, tile=16, progress=report)
    assert calls == [1, 2, 3]
