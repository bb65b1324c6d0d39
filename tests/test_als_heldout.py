"""``benchmarks/als_heldout.py``: ALS's held-out RMSE per latent dimension and precision."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_row_per_dimension_with_its_best_precision(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    _module("low_rank_catalogue").write_catalogue(tmp_path / "lr", n_users=120, n_items=80)
    assert _module("als_heldout").main([str(tmp_path / "lr"), "--dims", "2,4"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| lr |")]
    assert [row.split(" | ")[1] for row in rows] == ["2", "4"]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        scores = [float(c) for c in cells[2:8]]  # precisions 1, 2, 5, 10, 20, 50
        best, at = cells[8].split(" at ")
        assert float(best) == min(scores)
        assert [1, 2, 5, 10, 20, 50][scores.index(min(scores))] == float(at)
        # strong factors: shrinking every state toward 0 (precision 50) predicts worse
        assert scores[-1] > min(scores) + 0.05


def test_bad_dimensions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        _module("als_heldout").main([str(tmp_path), "--dims", "8,x"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        _module("als_heldout").main([str(tmp_path), "--dims", "0"])
