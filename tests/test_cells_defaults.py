"""Every cell strategy on every cell space with its defaults: only the sizes are tiny (a few digits at 8 px, one
epoch, a 2-channel proxy at 8 px), the proxy's depth is the strategy's default, chosen per topology (NAS-Bench-201
needs a multiple of 3 cells; D-DARTS grows only DARTS-topology networks)."""

from __future__ import annotations

import pytest
import torch

from hwnas.cells import CellArch, get_cell_space
from hwnas.cells.catalog import CELL_SPACES
from hwnas.config import DataConfig, SearchConfig
from hwnas.errors import ConfigError
from hwnas.search.runner import run_search
from hwnas.strategies.base import SearchProblem, make_strategy
from tests.search_helpers import measured_model

pytestmark = pytest.mark.slow  # searches every cell strategy on every cell space (~100 s)

torch.set_num_threads(1)
RESOLUTION = 8
TINY = {"search_channels": 2, "search_resolution": RESOLUTION}  # sizes only: nothing else is set
CELL_STRATEGIES = ("darts", "fairdarts", "sp-darts", "ostr", "ddarts")
DEFAULT_DEPTH = {("nb201", "ddarts"): 15, ("darts", "ddarts"): 8, ("dartopti", "ddarts"): 8, "nb201": 6,
                 "darts": 5, "dartopti": 5}


@pytest.fixture(scope="module")
def luts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cell-luts")
    return {name: (folder / f"{name}.csv", measured_model(folder / f"{name}.csv", get_cell_space(name, RESOLUTION, 10)))
            for name in CELL_SPACES}


@pytest.mark.parametrize("space", sorted(CELL_SPACES))
def test_default_proxy_depth_fits_the_topology(luts, space):
    cells = get_cell_space(space, RESOLUTION, 10)
    model = luts[space][1]
    for name in CELL_STRATEGIES:
        strategy = make_strategy(name, SearchProblem(cells, model, 1.0), TINY)
        expected = DEFAULT_DEPTH.get((space, name), DEFAULT_DEPTH[space])
        assert strategy.search_space.layers == expected, (space, name)
    if space == "nb201":  # a count the user gives is taken as given: refused in one line where invalid
        with pytest.raises(ConfigError, match="layers=5 is not a positive multiple of 3"):
            make_strategy("darts", SearchProblem(cells, model, 1.0), {**TINY, "search_layers": 5})


@pytest.mark.parametrize("strategy", CELL_STRATEGIES)
@pytest.mark.parametrize("space", sorted(CELL_SPACES))
def test_cell_strategy_runs_on_cell_space_with_defaults(luts, tmp_path, space, strategy):
    config = SearchConfig(space=space, strategy=strategy, lut=str(luts[space][0]), epochs=1, warmup_epochs=0,
                          threads=1, strategy_params=dict(TINY), calibrate_networks=0, confirm=False,
                          data=DataConfig(resolution=RESOLUTION, batch_size=8, limit=16))
    result = run_search(config, tmp_path / "run")
    summary = result.summary
    assert summary["predicted_ms"] <= summary["budget_ms"] * (1 + 1e-9)
    assert result.history[-1]["arch_steps"] > 0  # the architecture was trained, not only the weights
    arch = CellArch.load(tmp_path / "run" / "arch.json")
    deployed = get_cell_space(space)
    assert arch.space.name == space and arch.space.layers == deployed.layers  # the space's network, not the proxy
    with torch.no_grad():
        assert arch.build().eval()(torch.randn(1, 3, RESOLUTION, RESOLUTION)).shape == (1, 10)
