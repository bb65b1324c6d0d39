"""``benchmarks/als_heldout.py``: ALS's held-out RMSE per latent dimension and precision."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from benchmark_scripts import benchmark_script

from graph_meta.eval.protocol import training_view
from graph_meta.fitting.als import PRECISION_GRID, choose_precision
from loaders.folder import read_dataset


def test_one_row_per_dimension_with_its_held_out_rmses(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "lr"
    benchmark_script("low_rank_catalogue").write_catalogue(folder, n_users=120, n_items=80)
    als_heldout = benchmark_script("als_heldout")
    assert als_heldout.main([str(folder), "--dims", "1,4", "--iters", "10"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| lr |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "4"]
    train = training_view(read_dataset(folder, tasks=False)).train
    codes = [pd.factorize(train[c])[0] for c in ("user_id", "item_id")]
    printed = []
    for row, dim in zip(rows, (1, 4), strict=True):
        cells = row.strip("| ").split(" | ")
        scores = [float(c) for c in cells[2:2 + len(PRECISION_GRID)]]
        # the held-out RMSEs of the fit's own precision search at that dimension
        _, want = choose_precision(*codes, train["rating"].to_numpy(), dim, PRECISION_GRID,
                                   10, 0, default=PRECISION_GRID[0])
        assert scores == [round(want[p], 4) for p in PRECISION_GRID]
        best, at = cells[2 + len(PRECISION_GRID)].split(" at ")
        assert float(best) == min(scores) and want[float(at)] == min(want.values())
        printed.append(scores)
    assert printed[0] != printed[1]  # the dimension reaches the fit


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for args in (["--dims", "8,x"], ["--dims", "0"], ["--iters", "0"]):
        with pytest.raises(SystemExit) as err:
            benchmark_script("als_heldout").main([str(tmp_path), *args])
        assert err.value.code == 2
